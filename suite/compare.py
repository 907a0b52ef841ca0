"""Regression compare of two runs: noise-aware, exit status 1 on a real slowdown.

A row moved when |change| > threshold AND the change exceeds the recorded spread:
|new - base| > noise_k * (iqr_base + iqr_new) / 2. A config that ran in the base run and fails
in the new one is a regression too.

Gates: ``any`` (default) fails when any row is slower or broken; ``geomean`` fails when the
geometric mean of new/base over all rows exceeds 1 + threshold, or anything broke. On shared
CPUs whose speed drifts between runs (seen here: best-per-problem ratios from 0.6x to 2x between
two runs of the same code), ``--best-only --gate geomean`` is the setting that does not flag noise.
"""

from __future__ import annotations

import math

import pandas as pd

from suite.store import KEYS, join

PROBLEM_KEYS = [k for k in KEYS if k != "config"]


def best_only(df: pd.DataFrame) -> pd.DataFrame:
    """One row per problem and backend: its fastest ok config (failed problems kept as failed)."""
    df = df.copy()
    df["_rank"] = df.median_ms.where(df.status == "ok", math.inf)
    best = df.sort_values("_rank").groupby(PROBLEM_KEYS, dropna=False, sort=False).head(1)
    return best.drop(columns="_rank").assign(config="best")


def compare(
    base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.05, noise_k: float = 1.0
) -> pd.DataFrame:
    j = join(base, new)
    both = j[j._merge == "both"].copy()
    both["change"] = both.median_ms_new / both.median_ms_base - 1
    spread = noise_k * (both.iqr_ms_base.fillna(0) + both.iqr_ms_new.fillna(0)) / 2
    moved = (both.median_ms_new - both.median_ms_base).abs() > spread
    verdict = pd.Series("same", index=both.index)
    verdict[(both.change > threshold) & moved] = "slower"
    verdict[(both.change < -threshold) & moved] = "faster"
    verdict[(both.change.abs() > threshold) & ~moved] = "noise"
    broke = (both.status_base == "ok") & (both.status_new != "ok")
    verdict[broke] = "broken"
    verdict[(both.status_base != "ok") & (both.status_new == "ok")] = "fixed"
    verdict[(both.status_base != "ok") & (both.status_new != "ok")] = "failing"
    verdict[(both.status_base == "unsupported") & (both.status_new == "unsupported")] = (
        "unsupported"
    )
    both["verdict"] = verdict
    return both


def geomean_ratio(table: pd.DataFrame) -> float:
    ok = table[(table.status_base == "ok") & (table.status_new == "ok")]
    ratios = (ok.median_ms_new / ok.median_ms_base).dropna()
    return math.exp(ratios.map(math.log).mean()) if len(ratios) else 1.0


def regressed(table: pd.DataFrame, gate: str = "any", threshold: float = 0.05) -> bool:
    if table.verdict.eq("broken").any():
        return True
    if gate == "geomean":
        return geomean_ratio(table) > 1 + threshold
    return bool(table.verdict.eq("slower").any())


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    moved = table[table.verdict.isin(["slower", "faster", "broken", "fixed"])]
    cols = [
        "layer",
        "backend",
        "pass",
        "pattern",
        "perm",
        "m",
        "n",
        "k",
        "config",
        "median_ms_base",
        "median_ms_new",
        "change",
        "verdict",
    ]
    out = moved[[c for c in cols if c in moved]].copy()
    out["change"] = (out.change * 100).round(1).astype(str) + "%"
    return out.sort_values("verdict")
