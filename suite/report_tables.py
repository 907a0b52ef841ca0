"""How the report prints its tables: ratios with their noise interval, unconverged timings marked.

The tables the report computes keep numbers (a ratio and its ``_lo``/``_hi`` bounds); these
functions turn them into the strings a reader sees, and add the footnote where a mark is used.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from suite.ratios import DAGGER, NOT_CONVERGED_NOTE, column, format_ms, format_ratios


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
    drop = [c for c in best if c.endswith(("_lo", "_hi", "_ok"))] + ["converged", "min_ms"]
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
        best_sparse=per_shape.sparse_backend,
        sparse_ms=side("sparse"),
        best_dense=per_shape.dense_backend,
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
