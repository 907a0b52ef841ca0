"""The bench report's plots: speed-ups as horizontal bars with their noise intervals as error bars.

Each function builds and returns a matplotlib Figure (no pyplot state), so tests can read its
title and labels; :func:`save` writes one to PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bimask.outputs import atomic_path

ERROR_BARS = "error bars: noise interval (median -+ IQR/2 of both timings)"


def _grouped_barh(
    values: pd.DataFrame,
    low: pd.DataFrame,
    high: pd.DataFrame,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Figure:
    """Rows of ``values`` are bar groups, columns are series; ``low``/``high`` the intervals."""
    rows, series = list(values.index), list(values.columns)
    fig = Figure(figsize=(9, 0.3 * len(rows) * max(1, len(series)) ** 0.5 + 2.0))
    ax = fig.subplots()
    height = 0.8 / max(1, len(series))
    base = np.arange(len(rows))
    for i, name in enumerate(series):
        v = values[name].to_numpy(float)
        err = np.vstack([v - low[name].to_numpy(float), high[name].to_numpy(float) - v])
        err = np.nan_to_num(np.clip(err, 0, None))
        ax.barh(base + (i - (len(series) - 1) / 2) * height, np.nan_to_num(v), height,
                xerr=err, capsize=2, label=str(name), error_kw={"lw": 0.8})  # fmt: skip
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(base, [str(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.text(0.01, 0.005, ERROR_BARS, fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig


def _pivots(df: pd.DataFrame, index: str, columns: str, value: str):
    pivot = [
        df.pivot_table(index=index, columns=columns, values=v, aggfunc="first", sort=False)
        for v in (value, f"{value}_lo", f"{value}_hi")
    ]
    return [p.reindex(index=pivot[0].index, columns=pivot[0].columns) for p in pivot]


def speedup_figure(per_shape: pd.DataFrame) -> Figure | None:
    """Best sparse over best dense backend per shape (bars) and pattern (series)."""
    if per_shape.empty or per_shape.ratio.dropna().empty:
        return None
    perm = per_shape.perm.astype(str).where(per_shape.perm.astype(str) != "-", "")
    data = per_shape.assign(
        shape=(
            per_shape.layer.astype(str)
            + " x"
            + per_shape.n.astype(str)
            + " "
            + per_shape["pass"].astype(str)
            + " "
            + perm
        ).str.strip()  # fmt: skip
    )
    values, low, high = _pivots(data, "shape", "pattern", "ratio")
    return _grouped_barh(
        values,
        low,
        high,
        "Best sparse backend against best dense backend, per shape",
        "speed-up over the best dense backend (x; >1: sparse faster)",
        "shape (layer x tokens, pass, permutation)",
    )


def step_figure(step: pd.DataFrame) -> Figure | None:
    """Projected training-step speed-up per layer and pattern (bars) and method (series)."""
    if step.empty or step.speedup.dropna().empty:
        return None
    data = step.assign(
        shape=step.layer.astype(str) + " x" + step.tokens.astype(str) + " " + step.pattern
    )
    for col in ("speedup_lo", "speedup_hi"):
        if col not in data:
            data[col] = np.nan
    values, low, high = _pivots(data, "shape", "method", "speedup")
    return _grouped_barh(
        values,
        low,
        high,
        "Projected training step per layer, against the dense step",
        "projected training-step speed-up over dense (x)",
        "layer x tokens, pattern",
    )


def save(fig: Figure | None, path: Path) -> Path | None:
    """Write ``fig`` as PNG at ``path``; returns the path, or None when there is no figure."""
    if fig is None:
        return None
    with atomic_path(path) as tmp:  # a temporary name beside it, then renamed
        fig.savefig(tmp, dpi=110, format="png")
    return path
