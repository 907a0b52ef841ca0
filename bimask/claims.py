"""The paper's claims decided with the seed spread: paired differences, their SE and CI, a verdict.

A *paired difference* of variants A and B at one pattern is taken seed by seed (seed s of A and
seed s of B start from the same initial weights and see the same data order):
``d_s = 100 * (top1_A[s] - top1_B[s])`` points, over the seeds both have. Then
  diff = mean(d_s),  se = std(d_s, ddof=1) / sqrt(n),  CI = diff -+ t(0.975, n - 1) * se
(Student's t, 95% two-sided). With one seed the SE is unknown and the CI is (-inf, inf).

Verdicts (``decide``), for a claim with margin ``m`` points (CI = [lo, hi]):
  non-inferiority ("A is within m of B", "A is at least as accurate as B"):
      holds               if lo > -m   (A is worse by less than m, at 95%)
      does not hold       if hi < -m   (A is worse by more than m, at 95%)
      not resolvable at this power   otherwise (the CI straddles -m)
  equivalence ("A is on par with B"):
      holds               if -m < lo and hi < m   (the whole CI inside (-m, m))
      does not hold       if hi < -m or lo > m    (the whole CI outside)
      not resolvable at this power   otherwise

The paper's claims (``CLAIMS``) and their margins:
  - Bi-Mask within 0.5 of dense at 2:4: non-inferiority, m = 0.5 (the paper's own "about half a
    point").
  - Bi-Mask at least as accurate as transposable masks, at every pattern: non-inferiority,
    m = 0.25. A margin of 0 would ask for significant *superiority*, which no study can show
    when the two are equal; 0.25 is half the paper's tolerance, since "at least as accurate" says
    more than "within half a point". With the study's target SE of 0.15 points and 6 seeds the
    CI's half-width is 2.57 * 0.15 = 0.39, so "holds" needs a measured diff above about +0.14.
  - Bi-Mask on par with SR-STE, at every pattern: equivalence, m = 0.5 (the same tolerance as
    the dense claim).
Every method-vs-method difference is also reported with its SE against the target
``TARGET_SE`` (0.15 points, the study's power requirement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

TARGET_SE = 0.15  # points: the standard profile's power requirement for a paired difference
HOLDS, FAILS, UNRESOLVED = "holds", "does not hold", "not resolvable at this power"

# two-sided 95% Student-t quantiles t(0.975, df), df = 1..30 (scipy's values, 4 digits)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def t_quantile(df: int) -> float:
    """t(0.975, df): scipy's when it is installed, else the table (normal 1.960 beyond 120)."""
    if df < 1:
        return math.inf
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:
        if df <= 30:
            return _T975[df - 1]
        return 2.021 if df <= 40 else 2.000 if df <= 60 else 1.980 if df <= 120 else 1.960


@dataclass(frozen=True)
class Paired:
    """A paired difference A - B in points over ``n`` shared seeds, with SE and 95% CI."""

    diff: float
    se: float
    lo: float
    hi: float
    n: int

    def meets_target(self, target: float = TARGET_SE) -> bool:
        return self.n > 1 and self.se <= target


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> Paired:
    """Seed -> top-1 (fraction) of A and of B; the difference over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed in common: a paired difference needs the same seeds for both")
    d = [100.0 * (a[s] - b[s]) for s in seeds]
    n = len(d)
    mean = sum(d) / n
    if n == 1:
        return Paired(mean, math.nan, -math.inf, math.inf, 1)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n)
    half = t_quantile(n - 1) * se
    return Paired(mean, se, mean - half, mean + half, n)


def decide(p: Paired, kind: str, margin: float) -> str:
    """The verdict of the module docstring for ``kind`` 'noninferior' or 'equivalent'."""
    if kind == "noninferior":
        return HOLDS if p.lo > -margin else FAILS if p.hi < -margin else UNRESOLVED
    if kind == "equivalent":
        if -margin < p.lo and p.hi < margin:
            return HOLDS
        return FAILS if p.hi < -margin or p.lo > margin else UNRESOLVED
    raise ValueError(f"unknown claim kind {kind!r}; use 'noninferior' or 'equivalent'")


@dataclass(frozen=True)
class Claim:
    text: str  # "{a}", "{b}", "{pattern}", "{m}" are filled in
    a: str
    b: str
    kind: str
    margin: float
    patterns: tuple[str, ...] | None  # None: every pattern the run has


CLAIMS = [
    Claim("Bi-Mask within {m} of dense at {pattern}", "bimask", "dense", "noninferior", 0.5,
          ("2:4",)),
    Claim("Bi-Mask at least as accurate as transposable masks at {pattern} (margin {m})",
          "bimask", "tmask", "noninferior", 0.25, None),
    Claim("Bi-Mask on par with SR-STE at {pattern} (within +-{m})", "bimask", "srste",
          "equivalent", 0.5, None),
]  # fmt: skip


def paper_bimask(variants) -> str | None:
    """The variant the paper's claims are about: Bi-Mask with random permutations if the run
    has it, else plain ``bimask``, else none."""
    for name in ("bimask-random", "bimask"):
        if name in set(variants):
            return name
    return None


def seed_table(df: pd.DataFrame, variant: str, pattern: str) -> dict[int, float]:
    """Seed -> final top-1 of one variant at one pattern (dense rows have pattern '-')."""
    col = "variant" if "variant" in df else "method"
    rows = df[(df[col] == variant) & (df.pattern == (pattern if variant != "dense" else "-"))]
    return dict(zip(rows.seed.astype(int), rows.final_test_top1.astype(float), strict=True))


def check_claims(df: pd.DataFrame) -> pd.DataFrame:
    """One row per claim x pattern the run can test: the claim, the difference, its SE and CI,
    the seeds and the verdict."""
    col = "variant" if "variant" in df else "method"
    bimask = paper_bimask(df[col].unique())
    patterns = [p for p in df.pattern.unique() if p != "-"]
    rows = []
    for claim in CLAIMS:
        a = bimask if claim.a == "bimask" else claim.a
        for pattern in claim.patterns or patterns:
            ta, tb = seed_table(df, a or "", pattern), seed_table(df, claim.b, pattern)
            if not ta or not tb or not set(ta) & set(tb):
                continue
            p = paired(ta, tb)
            text = claim.text.format(pattern=pattern, m=claim.margin)
            rows.append({"claim": text, "a": a, "b": claim.b, "pattern": pattern,
                         **p.__dict__, "verdict": decide(p, claim.kind, claim.margin)})  # fmt: skip
    return pd.DataFrame(rows, columns=["claim", "a", "b", "pattern", "diff", "se", "lo", "hi",
                                       "n", "verdict"])  # fmt: skip


def all_differences(df: pd.DataFrame, target: float = TARGET_SE) -> pd.DataFrame:
    """Every variant-vs-variant paired difference at each pattern (dense included), with its SE
    and whether it meets ``target``."""
    col = "variant" if "variant" in df else "method"
    variants = [v for v in df[col].unique() if v != "dense"]
    rows = []
    for pattern in (p for p in df.pattern.unique() if p != "-"):
        present = [v for v in variants if seed_table(df, v, pattern)]
        others = (["dense"] if seed_table(df, "dense", pattern) else []) + present
        for j, a in enumerate(others):
            for b in others[:j] if a != "dense" else []:
                ta, tb = seed_table(df, a, pattern), seed_table(df, b, pattern)
                if not set(ta) & set(tb):
                    continue
                p = paired(ta, tb)
                rows.append({"pattern": pattern, "a": a, "b": b, **p.__dict__,
                             "meets_target": p.meets_target(target)})  # fmt: skip
    return pd.DataFrame(rows, columns=["pattern", "a", "b", "diff", "se", "lo", "hi", "n",
                                       "meets_target"])  # fmt: skip
