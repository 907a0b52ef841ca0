"""The result store: a results CSV (one row per measurement) plus a JSON sidecar of run metadata.

pandas in and out; two runs are joined with one call (:func:`join`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 1
# The contract: every results CSV has at least these columns.
REQUIRED = [
    "op",
    "backend",
    "pass",
    "pattern",
    "m",
    "n",
    "k",
    "dtype",
    "config",
    "status",
    "median_ms",
    "iqr_ms",
    "tflops",
    "speedup_vs_dense",
    "rel_error",
    "device",
]
KEYS = ["op", "layer", "backend", "pass", "pattern", "perm", "m", "n", "k", "dtype", "config"]


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=cwd or Path(__file__).parent,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno"],
            capture_output=True,
            text=True,
            cwd=cwd or Path(__file__).parent,
            timeout=10,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """speedup_vs_dense = best median of the dense baseline on the same problem / this median."""
    df = df.copy()
    if "baseline" not in df:
        df["baseline"] = False
    ok = df[(df.status == "ok") & df.baseline.astype(bool)]
    shape = ["layer", "pass", "pattern", "perm", "m", "n", "k", "dtype", "device"]
    base = ok.groupby(shape, dropna=False).median_ms.min().rename("dense_ms").reset_index()
    df = df.drop(columns=[c for c in ("dense_ms",) if c in df]).merge(base, on=shape, how="left")
    df["speedup_vs_dense"] = df.dense_ms / df.median_ms
    return df


def save(df: pd.DataFrame, out_dir: str | Path, meta: dict) -> Path:
    """Write results.csv and results.json atomically; returns the CSV path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for col in REQUIRED:
        if col not in df:
            df[col] = pd.NA
    sidecar = {
        "schema_version": SCHEMA_VERSION,
        "git_commit": git_commit(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        **meta,
    }
    csv, js = out / "results.csv", out / "results.json"
    df.assign(schema_version=SCHEMA_VERSION, git_commit=sidecar["git_commit"]).to_csv(
        csv.with_suffix(".csv.tmp"), index=False
    )
    js.with_suffix(".json.tmp").write_text(json.dumps(sidecar, indent=2, default=str))
    csv.with_suffix(".csv.tmp").replace(csv)
    js.with_suffix(".json.tmp").replace(js)
    return csv


def load(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Load a run from its directory or its results CSV; returns (rows, metadata)."""
    path = Path(path)
    csv = path / "results.csv" if path.is_dir() else path
    if not csv.is_file():
        raise FileNotFoundError(f"no results CSV at {csv}")
    df = pd.read_csv(csv, keep_default_na=True)
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise ValueError(f"{csv} is not a results file: missing columns {missing}")
    sidecar = csv.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    for col in KEYS:
        if col not in df:
            df[col] = "-"
    df[["layer", "perm", "config"]] = df[["layer", "perm", "config"]].fillna("-")
    return df, meta


def join(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Rows of two runs matched on the measurement keys (suffixes _base and _new)."""
    cols = [c for c in KEYS if c in base and c in new]
    return base.merge(new, on=cols, how="outer", suffixes=("_base", "_new"), indicator=True)


def merge_runs(dirs: list[Path], out_dir: Path, meta: dict) -> Path:
    """Merge shard outputs into one run (the torchrun / --shard mode)."""
    frames = [load(d)[0] for d in dirs]
    return save(pd.concat(frames, ignore_index=True), out_dir, meta)


def median_of_runs(dirs: list[Path]) -> pd.DataFrame:
    """A baseline from several runs: per measurement key, the run with the median timing.

    Single runs on shared machines drift (whole-run speed changes of tens of percent); a
    baseline taken in one fast or slow window would flag noise as change.
    """
    rows = pd.concat([load(d)[0] for d in dirs], ignore_index=True)
    keys = [c for c in KEYS if c in rows]
    rows = rows.assign(_t=rows.median_ms.fillna(float("inf"))).sort_values("_t", kind="stable")
    groups = rows.groupby(keys, dropna=False)
    pos, size = groups.cumcount(), groups["_t"].transform("size")
    return rows[pos == size // 2].drop(columns="_t").reset_index(drop=True)
