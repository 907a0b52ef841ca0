import pytest
import torch

from bimask import NMPattern, nm_mask
from bimask.layout import from_gemm, to_gemm

PATTERNS = ["2:4", "1:4", "2:8", "4:8", "1:16"]


def _groups(mask2d, m):
    rows, k = mask2d.shape
    return mask2d.reshape(rows, k // m, m)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(16, 32), (48, 64), (3, 16 * 5), (1, 16)])
def test_linear_mask_is_topn_along_input(pattern, shape, rng):
    p = NMPattern.parse(pattern)
    w = torch.randn(shape, generator=rng)
    mask = nm_mask(w, pattern)
    assert mask.dtype == torch.bool and mask.shape == w.shape
    g = _groups(mask, p.m)
    assert (g.sum(-1) == p.n).all()
    # every kept weight is at least as large as every pruned one in its group
    a = _groups(w.abs(), p.m)
    kept_min = torch.where(g, a, torch.inf).amin(-1)
    pruned_max = torch.where(g, -torch.inf, a).amax(-1)
    assert (kept_min >= pruned_max).all()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_conv_nhwc_groups_run_along_input_channels(pattern, rng):
    p = NMPattern.parse(pattern)
    w = torch.randn(8, 32, 3, 5, generator=rng)
    mask = nm_mask(w, pattern)
    per_position = mask.permute(0, 2, 3, 1).reshape(8, 3, 5, 32 // p.m, p.m)
    assert (per_position.sum(-1) == p.n).all()
    expected = nm_mask(w.permute(0, 2, 3, 1).reshape(8, -1), pattern)
    assert torch.equal(to_gemm(mask, "nhwc"), expected)


def test_conv_nchw_groups_run_in_kernel_order(rng):
    w = torch.randn(4, 3, 3, 3, generator=rng)  # K = 27 is not a multiple of 4 ...
    with pytest.raises(ValueError, match="not a multiple of M=4"):
        nm_mask(w, "2:4", conv_order="nchw")
    w = torch.randn(4, 4, 3, 3, generator=rng)
    mask = nm_mask(w, "2:4", conv_order="nchw")
    assert (mask.reshape(4, 9, 4).sum(-1) == 2).all()
    assert torch.equal(mask, nm_mask(w.reshape(4, -1), "2:4").reshape(w.shape))


def test_layout_roundtrip(rng):
    w = torch.randn(6, 8, 3, 2, generator=rng)
    for order in ("nhwc", "nchw"):
        assert torch.equal(from_gemm(to_gemm(w, order), w.shape, order), w)


def test_ties_are_broken_deterministically_to_lower_index():
    w = torch.ones(2, 8)
    assert nm_mask(w, "2:4")[0].tolist() == [True, True, False, False] * 2
    w = torch.tensor([[1.0, 3.0, 3.0, 3.0]])
    assert nm_mask(w, "2:4").tolist() == [[False, True, True, False]]
    w = torch.ones(1, 16)
    assert nm_mask(w, "1:16").tolist() == [[True] + [False] * 15]


def test_not_divisible_is_a_clear_error(rng):
    with pytest.raises(ValueError, match="size 30, not a multiple of M=4"):
        nm_mask(torch.randn(4, 30, generator=rng), "2:4")
    with pytest.raises(ValueError, match="input channels"):
        nm_mask(torch.randn(4, 6, 3, 3, generator=rng), "2:4")  # K=54, channels 6


@pytest.mark.parametrize(
    "weight,exc,needle",
    [
        (torch.ones(4, 8, dtype=torch.int32), TypeError, "floating-point"),
        (torch.ones(4, 4, 4), ValueError, "2-D Linear weight"),
        (torch.tensor([[1.0, float("nan"), 0.0, 1.0]]), ValueError, "NaN or Inf"),
        (torch.tensor([[1.0, float("inf"), 0.0, 1.0]]), ValueError, "NaN or Inf"),
    ],
)
def test_bad_weights(weight, exc, needle):
    with pytest.raises(exc, match=needle):
        nm_mask(weight, "2:4")


def test_huge_finite_weights_are_not_mistaken_for_inf():
    w = torch.full((1, 8), 3e38)  # the sum overflows, the values do not
    assert nm_mask(w, "2:4").sum() == 4


def test_half_precision_and_no_grad_leak(rng):
    w = torch.randn(8, 16, generator=rng, requires_grad=True)
    assert not nm_mask(w, "2:4").requires_grad
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        assert (nm_mask(w.detach().to(dtype), "2:4").reshape(8, 4, 4).sum(-1) == 2).all()
