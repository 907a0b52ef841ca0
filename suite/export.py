"""Export a run's tables: CSV, Markdown, LaTeX, HTML (tabulate); the report's PNG plots are
suite/report_plots.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bimask.outputs import atomic_write_text

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
