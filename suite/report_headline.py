"""The report's headline: per pass and pattern, the best sparse backend against the best dense one.

Per shape (a layer's GEMM at one token count; for bwd-data each permutation strategy is its own
shape, since its mask differs) the fastest sparse-path row is set against the fastest dense
implementation timed on the unmasked weight (the dense layer a sparse one replaces). The headline
is the geometric mean of those per-shape ratios over the shapes of a pass and pattern, with its
noise interval and its spread over shapes, and which backend was fastest on how many shapes.
"""

from __future__ import annotations

import math

import pandas as pd

from suite.ratios import (
    DAGGER,
    bounds,
    column,
    converged,
    format_ratio,
    geomean_summary,
    ratio_interval,
    verdict,
)
from suite.report_tables import is_true

SHAPE = ["layer", "pass", "pattern", "perm", "m", "n", "k", "dtype", "device"]


def _dense_side(g: pd.DataFrame) -> pd.DataFrame:
    """Dense implementations timed on the unmasked weight (all dense rows where no operand)."""
    dense = g[~g.sparse_path.astype(bool)]
    if "operand" in dense:
        dense = dense[dense.operand.fillna("unmasked") != "masked"]
    return dense


def _fastest(g: pd.DataFrame) -> pd.Series | None:
    return None if g.empty else g.loc[g.median_ms.astype(float).idxmin()]


def _clear_winner(g: pd.DataFrame) -> bool:
    """The fastest row's noise interval lies wholly below the runner-up's."""
    if len(g) < 2:
        return True
    low, high = bounds(g.sort_values("median_ms").iloc[:2])
    return bool(high[0] < low[1])


def best_vs_best(best: pd.DataFrame) -> pd.DataFrame:
    """One row per shape with both a sparse and a dense row: the two fastest and their ratio."""
    if best.empty:
        return pd.DataFrame()
    ok = best[(column(best, "status", "ok") == "ok") & (best.pattern != "dense")].copy()
    ok["converged"] = converged(ok)
    keys = [c for c in SHAPE if c in ok]
    rows = []
    for key, g in ok.groupby(keys, dropna=False):
        sparse = _fastest(g[g.sparse_path.astype(bool)])
        dense = _fastest(_dense_side(g))
        if sparse is None or dense is None:
            continue
        winner = _fastest(g)
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "sparse_backend": sparse.backend,
                "sparse_warm": is_true(sparse.get("warm_start")),
                "sparse_median_ms": sparse.median_ms,
                "sparse_iqr_ms": sparse.get("iqr_ms", math.nan),
                "sparse_min_ms": sparse.get("min_ms", math.nan),
                "dense_backend": dense.backend,
                "dense_warm": is_true(dense.get("warm_start")),
                "dense_median_ms": dense.median_ms,
                "dense_iqr_ms": dense.get("iqr_ms", math.nan),
                "dense_min_ms": dense.get("min_ms", math.nan),
                "sparse_ok": bool(sparse.converged),
                "dense_ok": bool(dense.converged),
                "converged": bool(sparse.converged and dense.converged),
                "winner": winner.backend,
                "winner_clear": _clear_winner(g),
                # a win rests on the timings of the winner and its runner-up
                "winner_converged": bool(g.nsmallest(2, "median_ms").converged.all()),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["ratio"], table["ratio_lo"], table["ratio_hi"] = ratio_interval(
        table, table, "dense_", "sparse_"
    )
    table["verdict"] = [
        verdict(lo, hi) for lo, hi in zip(table.ratio_lo, table.ratio_hi, strict=True)
    ]
    return table


def _wins(g: pd.DataFrame) -> str:
    """``torch_tiled 5 (2 clear), torch_dense 1`` ordered by shapes won; ``†`` where a win rests
    on a timing that did not converge."""
    parts = []
    for backend, w in sorted(g.groupby("winner"), key=lambda kv: (-len(kv[1]), kv[0])):
        clear = int(w.winner_clear.sum())
        mark = "" if w.winner_converged.all() else DAGGER
        parts.append(f"{backend} {len(w)} ({clear} clear){mark}")
    return ", ".join(parts)


def headline(per_shape: pd.DataFrame) -> pd.DataFrame:
    """Per pass and pattern: geometric mean over shapes of best sparse / best dense, its noise
    interval, spread over shapes, how many shapes go each way, and the wins per backend."""
    if per_shape.empty:
        return pd.DataFrame()
    rows = []
    for (pass_, pattern), g in per_shape.groupby(["pass", "pattern"], sort=True):
        s = geomean_summary(g.ratio, g.ratio_lo, g.ratio_hi)
        rows.append(
            {
                "pass": pass_,
                "pattern": pattern,
                **s,
                "faster": int((g.verdict == "faster").sum()),
                "within_noise": int((g.verdict == "within noise").sum()),
                "slower": int((g.verdict == "slower").sum()),
                "not_converged": int((~g.converged.astype(bool)).sum()),
                "wins": _wins(g),
            }
        )
    return pd.DataFrame(rows)


def headline_display(table: pd.DataFrame) -> pd.DataFrame:
    """The headline as the report prints it."""
    if table.empty:
        return table
    return pd.DataFrame(
        {
            "pass": table["pass"],
            "pattern": table.pattern,
            "best sparse / best dense (geomean)": [
                format_ratio(r.geomean, r.geomean_lo, r.geomean_hi, r.not_converged == 0)
                for r in table.itertuples()
            ],
            "over shapes (GSD; min-max)": [
                ("-" if math.isnan(r.gsd) else f"{r.gsd:.3g}; ") + f"{r.min:.3g}-{r.max:.3g}"
                for r in table.itertuples()
            ],
            "shapes: faster / noise / slower": [
                f"{r.shapes}: {r.faster} / {r.within_noise} / {r.slower}"
                + (f" ({r.not_converged}{DAGGER})" if r.not_converged else "")
                for r in table.itertuples()
            ],
            "fastest backend (shapes won)": table.wins,
        }
    )
