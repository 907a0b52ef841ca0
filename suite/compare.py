"""Regression compare of two runs: noise-aware, exit status 1 on a real slowdown.

A row moved when |change| > threshold AND the change exceeds the recorded spread:
|new - base| > noise_k * (iqr_base + iqr_new) / 2. A config that ran in the base run and fails
in the new one is a regression too.
"""

from __future__ import annotations

import pandas as pd

from suite.store import join


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
    both["verdict"] = verdict
    return both


def regressed(table: pd.DataFrame) -> bool:
    return bool(table.verdict.isin(["slower", "broken"]).any())


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
