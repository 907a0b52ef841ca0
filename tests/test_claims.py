"""The paper's claims decided from paired seed differences: CI arithmetic and every verdict."""

import math
import sys

import pandas as pd
import pytest

from bimask import claims
from bimask.claims import FAILS, HOLDS, UNRESOLVED, decide, paired


def _pair(diffs_points):
    """Seed tables whose per-seed differences are ``diffs_points`` (points)."""
    a = {s: 0.9 + d / 100 for s, d in enumerate(diffs_points)}
    b = {s: 0.9 for s in range(len(diffs_points))}
    return paired(a, b)


def test_paired_difference_by_hand():
    # d = 1, 1, 2 points: mean 4/3, sd sqrt(1/3), se sqrt(1/3)/sqrt(3) = 1/3, t(0.975, 2) = 4.303
    p = paired({0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.89, 1: 0.90, 2: 0.90})
    assert p.n == 3
    assert p.diff == pytest.approx(4 / 3)
    assert p.se == pytest.approx(1 / 3)
    assert p.lo == pytest.approx(4 / 3 - 4.303 / 3, abs=1e-3)
    assert p.hi == pytest.approx(4 / 3 + 4.303 / 3, abs=1e-3)


def test_pairs_only_the_seeds_both_have():
    p = paired({0: 0.9, 1: 0.8, 7: 0.5}, {0: 0.8, 1: 0.7})
    assert p.n == 2 and p.diff == pytest.approx(10.0) and p.se == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="no seed in common"):
        paired({0: 0.9}, {1: 0.9})


def test_one_seed_is_never_resolvable():
    p = _pair([3.0])
    assert math.isnan(p.se) and p.lo == -math.inf and p.hi == math.inf
    assert decide(p, "noninferior", 0.5) == UNRESOLVED
    assert not p.meets_target()


@pytest.mark.parametrize(
    "diffs,kind,verdict",
    [
        ([0.1, 0.2, 0.3], "noninferior", HOLDS),  # CI -0.05..0.45, above -0.5
        ([-2.0, -2.1, -1.9], "noninferior", FAILS),  # CI -2.25..-1.75, below -0.5
        ([1.0, -1.0, 0.0], "noninferior", UNRESOLVED),  # CI -2.48..2.48 straddles -0.5
        ([0.1, 0.2, 0.3], "equivalent", HOLDS),  # inside (-0.5, 0.5)
        ([2.0, 2.1, 1.9], "equivalent", FAILS),  # wholly above +0.5
        ([-2.0, -2.1, -1.9], "equivalent", FAILS),  # wholly below -0.5
        ([1.0, -1.0, 0.0], "equivalent", UNRESOLVED),
        ([0.3, 0.4, 0.5], "equivalent", UNRESOLVED),  # CI 0.15..0.65 crosses +0.5
    ],
)
def test_each_verdict(diffs, kind, verdict):
    assert decide(_pair(diffs), kind, 0.5) == verdict


def test_t_table_matches_scipy_and_is_used_without_it(monkeypatch):
    with_scipy = [claims.t_quantile(df) for df in (1, 2, 5, 10, 30)]
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import now raises ImportError
    table = [claims.t_quantile(df) for df in (1, 2, 5, 10, 30)]
    assert table == [12.706, 4.303, 2.571, 2.228, 2.042]
    assert table == pytest.approx(with_scipy, abs=1e-3)


def _runs(rows):
    return pd.DataFrame(rows, columns=["variant", "method", "pattern", "seed", "final_test_top1"])


def test_check_claims_on_a_synthetic_seed_table():
    rows = []
    for s in range(4):
        rows.append(("dense", "dense", "-", s, 0.910 + 0.001 * s))
        rows.append(("bimask-random", "bimask", "2:4", s, 0.908 + 0.001 * s))  # -0.2, sd 0
        rows.append(("bimask-greedy", "bimask", "2:4", s, 0.90))  # not the paper's variant
        rows.append(("tmask", "tmask", "2:4", s, 0.880 + (0.002 if s % 2 else 0)))
        rows.append(("srste", "srste", "2:4", s, 0.90 + 0.01 * (s % 2)))
    found = claims.check_claims(_runs(rows)).set_index("b")
    assert set(found.a) == {"bimask-random"}  # the paper's Bi-Mask: random permutations
    assert found.loc["dense", "diff"] == pytest.approx(-0.2)
    assert found.loc["dense", "verdict"] == HOLDS
    assert found.loc["tmask", "diff"] == pytest.approx(2.85)  # 2.8, 2.7, 3.0, 2.9
    assert found.loc["tmask", "verdict"] == HOLDS
    assert found.loc["srste", "verdict"] == UNRESOLVED  # diffs 0.8, -0.1, 1.0, 0.1: CI crosses +0.5


def test_all_differences_report_se_against_the_target():
    rows = [("dense", "dense", "-", s, 0.91) for s in range(3)]
    rows += [("tmask", "tmask", "2:4", s, 0.90 + 0.001 * s) for s in range(3)]  # se 0.058
    rows += [("srste", "srste", "2:4", s, 0.90 + 0.005 * s) for s in range(3)]  # se 0.29
    d = claims.all_differences(_runs(rows)).set_index(["a", "b"])
    assert len(d) == 3  # tmask-dense, srste-dense, srste-tmask
    assert d.loc[("tmask", "dense"), "se"] == pytest.approx(0.1 / 3**0.5)
    assert bool(d.loc[("tmask", "dense"), "meets_target"])
    assert not bool(d.loc[("srste", "dense"), "meets_target"])


def test_compare_report_prints_the_numbers_of_its_seed_table():
    from bimask import compare

    rows = []
    for s in range(3):
        for variant, method, pattern, top1 in [
            ("dense", "dense", "-", 0.91 + 0.001 * s),
            ("tmask", "tmask", "2:4", 0.905 - 0.002 * s),
            ("bimask-random", "bimask", "2:4", 0.907),
        ]:
            rows.append({"model": "mlp", "dataset": "synthetic", "variant": variant,
                         "method": method, "pattern": pattern, "seed": s, "epochs": 1,
                         "final_test_top1": top1, "bwd_kept_frac": 0.8,
                         "mask_overhead_frac": 0.01, "device": "cpu"})  # fmt: skip
    df = pd.DataFrame(rows)
    md = compare.report(df, "r", None, "cmd")
    for _, r in claims.check_claims(df).iterrows():
        assert f"{r['diff']:+.2f} (95% CI {r['lo']:+.2f} to {r['hi']:+.2f}, SE {r['se']:.2f})" in md
        assert f"**{r['verdict']}**" in md
    for _, r in claims.all_differences(df).iterrows():
        assert f"| {r['diff']:+.2f} " in md and f"| {r['se']:.3f} " in md
    # SEs: bimask-dense 0.058, tmask-dense 0.173, bimask-tmask 0.115
    assert "met by 2 of 3; the others need more seeds" in md
