import pytest

from bimask import NMPattern


@pytest.mark.parametrize("text,n,m", [("2:4", 2, 4), ("1:16", 1, 16), (" 4 : 8 ", 4, 8)])
def test_parse_valid(text, n, m):
    p = NMPattern.parse(text)
    assert (p.n, p.m) == (n, m)
    assert str(p) == f"{n}:{m}"
    assert NMPattern.parse(p) is p
    assert NMPattern.parse((n, m)) == p


@pytest.mark.parametrize(
    "bad,needle",
    [
        ("0:4", "1 <= N < M"),
        ("5:4", "1 <= N < M"),
        ("4:4", "1 <= N < M"),
        ("2:0", "1 <= N < M"),
        ("-1:4", "1 <= N < M"),
        ("a:b", "integers"),
        ("2.5:4", "integers"),
        ("2", "N:M"),
        ("2:4:8", "N:M"),
    ],
)
def test_parse_rejects_with_named_input_and_rule(bad, needle):
    with pytest.raises(ValueError) as err:
        NMPattern.parse(bad)
    assert needle in str(err.value)
    assert bad.split(":")[0].strip() in str(err.value)


def test_constructor_rejects_non_integers():
    with pytest.raises(ValueError, match="must be an integer"):
        NMPattern(2.0, 4)
    with pytest.raises(ValueError, match="must be an integer"):
        NMPattern(True, 4)


@pytest.mark.parametrize(
    "text,kept",
    [("2:4", 2), ("1:4", 1), ("2:8", 2), ("1:8", 1), ("1:16", 1), ("4:8", 4), ("1:2", 2)],
)
def test_max_kept_per_aligned_window(text, kept):
    assert NMPattern.parse(text).max_kept_per_aligned_window(4) == kept
