"""Export a run's tables: CSV, Markdown, LaTeX, HTML (tabulate), and PNG plots (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bimask.outputs import atomic_path, atomic_write_text

FORMATS = {"csv": ".csv", "md": ".md", "latex": ".tex", "html": ".html"}


def render(df: pd.DataFrame, fmt: str, floatfmt: str = ".4g") -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    table = {"md": "github", "latex": "latex_booktabs", "html": "html"}.get(fmt)
    if table is None:
        raise ValueError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    return tabulate(
        df, headers="keys", tablefmt=table, showindex=False, floatfmt=floatfmt, missingval="-"
    )


def write(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``df`` in ``fmt`` (default: from the file suffix) atomically."""
    path = Path(path)
    fmt = fmt or {v: k for k, v in FORMATS.items()}.get(path.suffix)
    if fmt is None:
        raise ValueError(f"cannot tell the format of {path}; use --format {sorted(FORMATS)}")
    text = render(df, fmt)
    return atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def _barh(pivot: pd.DataFrame, xlabel: str, path: Path) -> Path | None:
    """A horizontal bar chart of ``pivot`` (rows: shapes, columns: series) with a 1.0 line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if pivot.dropna(how="all").empty:
        return None
    ax = pivot.plot.barh(figsize=(8, 0.35 * len(pivot) + 1.5))
    ax.axvline(1.0, color="k", lw=0.8)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel(xlabel)
    ax.figure.tight_layout()
    try:
        with atomic_path(path) as tmp:
            ax.figure.savefig(tmp, dpi=110)
    finally:
        plt.close(ax.figure)
    return path


def plot_speedups(best: pd.DataFrame, path: Path) -> Path | None:
    """Speed-up over the dense baseline of the best sparse kernel, by shape and pattern."""
    data = best[(best.status == "ok") & best.sparse_path.astype(bool)]
    if data.empty:
        return None
    data = data.groupby(["layer", "n", "pass", "pattern"]).speedup_vs_dense.max().reset_index()
    data["shape"] = data.layer + " x" + data.n.astype(str) + " " + data["pass"]
    data["speedup_vs_dense"] = data.speedup_vs_dense.astype(float)
    pivot = data.pivot_table(index="shape", columns="pattern", values="speedup_vs_dense")
    return _barh(pivot, "speed-up over dense (best sparse backend)", path)


def plot_step(step: pd.DataFrame, path: Path) -> Path | None:
    """Projected training-step speed-up per layer and method."""
    if step.empty:
        return None
    step = step.assign(
        shape=step.layer + " x" + step.tokens.astype(str) + " " + step.pattern,
        speedup=step.speedup.astype(float),
    )
    pivot = step.pivot_table(index="shape", columns="method", values="speedup")
    return _barh(pivot, "projected training-step speed-up over dense (per layer)", path)
