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

from bimask.outputs import atomic_path, atomic_write_text

SCHEMA_VERSION = 1
KNOWN_SCHEMAS = {1}  # the versions load() can read
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


def _git(args: list[str], cwd: Path | None) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            cwd=cwd or Path(__file__).parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: Path | None = None) -> str:
    """The commit the code ran from (the id only; see :func:`git_dirty`)."""
    return _git(["rev-parse", "HEAD"], cwd) or "unknown"


def git_dirty(cwd: Path | None = None) -> bool | None:
    """Whether tracked files differ from that commit (None where git cannot tell)."""
    status = _git(["status", "--porcelain", "-uno"], cwd)
    return None if status is None else bool(status)


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """speedup_vs_dense = best median of the dense baseline on the same problem / this median.

    Run it on a whole run's rows: after merging shards the baseline may sit in another shard.
    """
    df = df.copy()
    if "baseline" not in df:
        df["baseline"] = False
    ok = df[(df.status == "ok") & df.baseline.fillna(False).astype(bool)]
    shape = ["layer", "pass", "pattern", "perm", "m", "n", "k", "dtype", "device"]
    base = ok.groupby(shape, dropna=False).median_ms.min().rename("dense_ms").reset_index()
    df = df.drop(columns=[c for c in ("dense_ms",) if c in df]).merge(base, on=shape, how="left")
    df["speedup_vs_dense"] = df.dense_ms / df.median_ms
    return df


def save(df: pd.DataFrame, out_dir: str | Path, meta: dict) -> Path:
    """Write results.csv and results.json, each atomically; returns the CSV path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for col in REQUIRED:
        if col not in df:
            df[col] = pd.NA
    sidecar = {
        "schema_version": SCHEMA_VERSION,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        **meta,
    }
    csv, js = out / "results.csv", out / "results.json"
    rows = df.assign(schema_version=SCHEMA_VERSION, git_commit=sidecar["git_commit"])
    with atomic_path(csv) as tmp:
        rows.to_csv(tmp, index=False)
    atomic_write_text(js, json.dumps(sidecar, indent=2, default=str))
    return csv


def _as_int(value):
    """1, 1.0 and "1" as the int 1; anything else as it is."""
    try:
        return int(value) if float(value).is_integer() else value
    except (TypeError, ValueError):
        return value


def _check_schema(version, where: Path) -> None:
    if version not in KNOWN_SCHEMAS:
        raise ValueError(
            f"{where} has schema_version {version!r}, which this suite does not know "
            f"(it reads {sorted(KNOWN_SCHEMAS)}); use the suite version that wrote it"
        )


def load_meta(csv: Path) -> dict:
    """The JSON sidecar of a results CSV ({} where there is none)."""
    sidecar = csv.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{sidecar} is not valid JSON ({err}); restore it or delete it to load the CSV alone"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{sidecar} is not a results sidecar (a JSON object expected)")
    if "schema_version" in meta:
        _check_schema(_as_int(meta["schema_version"]), sidecar)
    return meta


def load(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Load a run from its directory or its results CSV; returns (rows, metadata)."""
    path = Path(path)
    csv = path / "results.csv" if path.is_dir() else path
    if not csv.is_file():
        raise FileNotFoundError(f"no results CSV at {csv}")
    try:
        df = pd.read_csv(csv, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{csv} is not a results CSV: {err}") from None
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise ValueError(f"{csv} is not a results file: missing columns {missing}")
    if "schema_version" in df:
        for version in df.schema_version.dropna().unique():
            _check_schema(_as_int(version), csv)
    meta = load_meta(csv)
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
    """Merge run outputs into one run; speed-ups are recomputed on the merged rows (a shard
    may hold the sparse backends and another the dense baseline). For shards use
    :func:`suite.shards.merge_shards`, which checks that every shard is there first."""
    frames = [load(d)[0] for d in dirs]
    rows = pd.concat(frames, ignore_index=True)
    if len(rows) and "baseline" in rows:
        rows = add_speedups(rows)
    return save(rows, out_dir, meta)


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
