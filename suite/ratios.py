"""Ratios of timings with their noise interval, and how a report writes them.

Every timing row keeps its median, IQR and fastest sample; its noise interval is
median -+ IQR/2, never below the fastest sample (:func:`suite.timing.spread_bounds`). A speed-up
of X over B is ``B / X``; its interval runs from ``B_low / X_high`` to ``B_high / X_low`` (both
sides at the edge of their noise against each other), so an interval that contains 1.0 is a
result the timing cannot tell from no difference: it is written "within noise". A ratio that
rests on a timing which did not converge (its relative standard error was still above the
target when its time budget ran out) is marked with :data:`DAGGER`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from suite.timing import spread_bounds

DAGGER = "†"
NOT_CONVERGED_NOTE = (
    f"{DAGGER} rests on a timing that did not converge (its relative standard error was still "
    "above the target when its time budget ran out): read it with care."
)
SPREAD_NOTE = (
    "Each timing's noise interval is its median -+ IQR/2 (the middle half of its samples), never "
    "below its fastest sample. A ratio B/X runs from B_low/X_high to B_high/X_low; one whose "
    "interval contains 1.0 is shown as *within noise*."
)


def column(df: pd.DataFrame, name: str, default=math.nan) -> pd.Series:
    """``df[name]`` as a Series, or ``default`` on every row where the column is missing."""
    if name in df:
        return df[name]
    return pd.Series(default, index=df.index)


def converged(df: pd.DataFrame) -> pd.Series:
    """The rows' ``converged`` flag as bools (a frame without the column counts as converged)."""
    flag = column(df, "converged", True)
    return flag.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "nan", "none"))


def bounds(df: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Noise bounds of the timings in ``df``'s ``{prefix}median_ms``/``iqr_ms``/``min_ms``."""
    return spread_bounds(
        column(df, f"{prefix}median_ms").to_numpy(float),
        column(df, f"{prefix}iqr_ms").to_numpy(float),
        column(df, f"{prefix}min_ms").to_numpy(float),
    )


def ratio_interval(num: pd.DataFrame, den: pd.DataFrame, num_prefix="", den_prefix=""):
    """``num / den`` row by row, with its (low, high) noise interval; frames aligned by row."""
    n_lo, n_hi = bounds(num, num_prefix)
    d_lo, d_hi = bounds(den, den_prefix)
    n = column(num, f"{num_prefix}median_ms").to_numpy(float)
    d = column(den, f"{den_prefix}median_ms").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return n / d, n_lo / d_hi, n_hi / d_lo


def verdict(low: float, high: float) -> str:
    """'faster' (whole interval above 1), 'slower', 'within noise' or 'spread unknown'."""
    if math.isnan(low) or math.isnan(high):
        return "spread unknown"
    if low > 1.0:
        return "faster"
    if high < 1.0:
        return "slower"
    return "within noise"


def format_ratio(ratio: float, low: float, high: float, ok: bool = True) -> str:
    """``2.01x (1.93-2.09)``, ``1.04x (0.91-1.19, within noise)``; ``†`` when not ``ok``;
    ``1x (reference)`` for a timing set against itself (a ratio of exactly 1 with no width)."""
    if ratio is None or math.isnan(ratio):
        return "-"
    if ratio == low == high == 1.0:  # a timing against itself
        return "1x (reference)"
    mark = "" if ok else DAGGER
    why = verdict(low, high)
    if why == "spread unknown":
        return f"{ratio:.3g}x (spread unknown){mark}"
    noise = ", within noise" if why == "within noise" else ""
    return f"{ratio:.3g}x ({low:.3g}-{high:.3g}{noise}){mark}"


def format_ratios(df: pd.DataFrame, name: str, ok: pd.Series | None = None) -> pd.Series:
    """The ``name``, ``name_lo``, ``name_hi`` columns of ``df`` written by :func:`format_ratio`."""
    ok = pd.Series(True, index=df.index) if ok is None else ok
    return pd.Series(
        [
            format_ratio(float(r), float(lo), float(hi), bool(good))
            for r, lo, hi, good in zip(
                column(df, name),
                column(df, f"{name}_lo"),
                column(df, f"{name}_hi"),
                ok,
                strict=True,
            )
        ],
        index=df.index,
        dtype=object,
    )


def format_ms(df: pd.DataFrame, name: str = "median_ms") -> pd.Series:
    """Times to 3 significant digits, ``†`` on a row whose timing did not converge."""
    good = converged(df)
    return pd.Series(
        [
            "-" if pd.isna(v) else f"{float(v):.3g}{'' if g else DAGGER}"
            for v, g in zip(column(df, name), good, strict=True)
        ],
        index=df.index,
        dtype=object,
    )


def geomean_summary(ratio, low, high) -> dict:
    """Geometric mean of per-shape ratios with its noise interval (the geometric means of the
    per-shape bounds), the geometric standard deviation and the min and max over shapes."""
    r, lo, hi = (np.asarray(x, dtype=float) for x in (ratio, low, high))
    keep = np.isfinite(r) & (r > 0)
    r, lo, hi = r[keep], lo[keep], hi[keep]
    if not len(r):
        nan = math.nan
        return {"geomean": nan, "geomean_lo": nan, "geomean_hi": nan, "gsd": nan, "min": nan,
                "max": nan, "shapes": 0}  # fmt: skip
    logs = np.log(r)
    known = np.isfinite(lo) & np.isfinite(hi) & (lo > 0)
    return {
        "geomean": float(np.exp(logs.mean())),
        "geomean_lo": float(np.exp(np.log(lo).mean())) if known.all() else math.nan,
        "geomean_hi": float(np.exp(np.log(hi).mean())) if known.all() else math.nan,
        "gsd": float(np.exp(logs.std(ddof=1))) if len(r) > 1 else math.nan,
        "min": float(r.min()),
        "max": float(r.max()),
        "shapes": int(len(r)),
    }
