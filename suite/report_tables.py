"""How the report prints its tables: ratios with their noise interval, unconverged timings marked.

The tables the report computes keep numbers (a ratio and its ``_lo``/``_hi`` bounds); these
functions turn them into the strings a reader sees, and add the footnote where a mark is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tabulate import tabulate

from suite.ratios import DAGGER, NOT_CONVERGED_NOTE, column, format_ms, format_ratios

WARM_MARK = "(w)"
WARM_NOTE = (
    f"{WARM_MARK}: this winner came from a warm start (the best config of the related problem "
    "named in `warm_from`, evaluated before the search); the others were found by the search."
)


def is_true(value: object) -> bool:
    """A flag read back from a CSV: True, numpy's True or "True"; anything else (NaN) is False."""
    return bool(value is True or (isinstance(value, np.bool_) and value) or value == "True")


def warm_flags(df: pd.DataFrame, name: str = "warm_start") -> pd.Series:
    """The boolean warm-start column (False where a row has none: older runs, mask rows)."""
    if name not in df:
        return pd.Series(False, index=df.index)
    return df[name].map(is_true).astype(bool)


def _mark(names: pd.Series, flags: pd.Series) -> pd.Series:
    return names.astype(str) + flags.map({True: f" {WARM_MARK}", False: ""})


def md(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A GitHub Markdown table, ``_none_`` for an empty frame."""
    if df.empty:
        return "_none_"
    return tabulate(
        df, headers="keys", tablefmt="github", showindex=False, floatfmt=floatfmt, missingval="-"
    )


def table_lines(df: pd.DataFrame) -> list[str]:
    """The table, then the footnote on unconverged timings if the table uses its mark."""
    text = md(df)
    lines = [text, ""]
    if DAGGER in text:
        lines += [NOT_CONVERGED_NOTE, ""]
    if WARM_MARK in text:
        lines += [WARM_NOTE, ""]
    return lines


def _ratio(df: pd.DataFrame, name: str) -> pd.Series:
    ok = column(df, f"{name}_ok", True).fillna(True).astype(bool)
    return format_ratios(df, name, ok)


def best_display(best: pd.DataFrame) -> pd.DataFrame:
    """The full per-config table: times marked where unconverged, ratios with intervals."""
    if best.empty:
        return best
    out = best.copy()
    out["median_ms"] = format_ms(best)
    for name in ("speedup_vs_dense", "vs_cusparselt"):
        if name in best:
            out[name] = _ratio(best, name)
    if "warm_start" in best:
        out["config"] = _mark(best.config, warm_flags(best))
        out["warm_from"] = best.get("warm_from").where(warm_flags(best), "-")
    drop = [c for c in best if c.endswith(("_lo", "_hi", "_ok"))] + ["converged", "min_ms"]
    drop += ["warm_start"]
    return out.drop(columns=[c for c in drop if c in out])


def per_shape_display(per_shape: pd.DataFrame) -> pd.DataFrame:
    """Best sparse against best dense, one row per shape."""
    if per_shape.empty:
        return per_shape

    def side(name: str) -> pd.Series:
        return format_ms(
            pd.DataFrame(
                {"median_ms": per_shape[f"{name}_median_ms"], "converged": per_shape[f"{name}_ok"]}
            )
        )

    cols = [c for c in ("layer", "pass", "pattern", "perm", "m", "n", "k") if c in per_shape]
    return per_shape[cols].assign(
        best_sparse=_mark(per_shape.sparse_backend, warm_flags(per_shape, "sparse_warm")),
        sparse_ms=side("sparse"),
        best_dense=_mark(per_shape.dense_backend, warm_flags(per_shape, "dense_warm")),
        dense_ms=side("dense"),
        dense_over_sparse=format_ratios(per_shape, "ratio", per_shape.converged.astype(bool)),
        fastest=per_shape.winner
        + per_shape.winner_clear.map({True: "", False: " (tie)"}).astype(str),
    )


def own_display(own: pd.DataFrame) -> pd.DataFrame:
    """Our sparse kernel over its dense twin."""
    if own.empty:
        return own
    out = own.drop(columns=[c for c in own if c.startswith("sparse_speedup_")])
    out["sparse_speedup"] = _ratio(own, "sparse_speedup")
    return out


def step_display(step: pd.DataFrame) -> pd.DataFrame:
    """The projected training step: step time with its interval, speed-up over dense."""
    if step.empty:
        return step
    ok = column(step, "converged", True).fillna(True).astype(bool)
    out = step[["layer", "tokens", "pattern", "method"]].copy()
    out["step_ms"] = [
        f"{ms:.3g} ({lo:.3g}-{hi:.3g})"
        for ms, lo, hi in zip(
            step.step_ms, column(step, "step_lo"), column(step, "step_hi"), strict=True
        )
    ]
    out["speedup"] = format_ratios(step, "speedup", ok)
    out["kernels"] = step.kernels
    return out
