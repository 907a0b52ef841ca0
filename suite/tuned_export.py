"""``python -m suite export-tuned RUN --out FILE``: a sweep's winners as a tuned-configs file.

For each sparse GEMM of the run (pass fwd / bwd-data, shape, pattern, dtype, and for bwd-data
the permutation realisation it was timed with) and each training backend, the fastest correct
row among the suite backends that map to it (:data:`TRAINING_BACKENDS`) is the winner, with
its kernel source hash where the run's cache recorded one. Training
reads the file (``python -m bimask.train --tuned-configs FILE``, see :mod:`bimask.tuned`); it
never imports the suite, the file is the link.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bimask import cli_args as ca
from bimask.outputs import atomic_write_text, check_output_file
from bimask.tuned import DTYPES, KIND, PASSES, SCHEMA, TunedConfigs
from suite import shards, store

# The one table: suite backend -> (training backend, kernel family or None). Our kernels'
# names and families are suite/backends/ours.py's; cusparselt is suite/backends/gpu.py's,
# cutlass_sm90 suite/backends/cutlass_sm90.py's.
TRAINING_BACKENDS: dict[str, tuple[str, str | None]] = {
    "bimask_sparse": ("kernels", "sm80"),
    "bimask_sparse_sm90": ("kernels", "sm90"),
    "cusparselt": ("cusparselt", None),
    "cutlass_sm90": ("cutlass_sm90", None),
}
_GROUP = ["training_backend", "pass", "m", "n", "k", "pattern", "dtype", "realisation"]


def _true(col: pd.Series) -> pd.Series:
    return col.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def _config(text: object) -> dict | None:
    try:
        config = json.loads(str(text))
    except json.JSONDecodeError:
        return None
    return config if isinstance(config, dict) else None


def _number(value: object) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def candidates(df: pd.DataFrame) -> pd.DataFrame:
    """The rows a winner may come from: correct (status ok), timed, on a sparse path of a
    suite backend that maps to a training backend, for a sparse pass of a 16-bit GEMM."""
    ms = pd.to_numeric(df.median_ms, errors="coerce")
    sparse = _true(df["sparse_path"]) if "sparse_path" in df else pd.Series(True, df.index)
    keep = (
        (df.status == "ok")
        & df.backend.isin(TRAINING_BACKENDS)
        & df["pass"].isin(PASSES)
        & df.dtype.isin(DTYPES)
        & (df.pattern != "dense")
        & sparse
        & (ms > 0)
        & (ms < math.inf)
    )
    rows = df[keep].copy()
    rows["median_ms"] = ms[keep]
    rows["config_dict"] = rows.config.map(_config)
    rows = rows[rows.config_dict.notna()]
    rows["training_backend"] = rows.backend.map(lambda b: TRAINING_BACKENDS[b][0])
    rows["realisation"] = rows.config_dict.map(lambda c: c.get("perm_realisation", "-"))
    return rows


_MATCH = ("backend", "pass", "m", "n", "k", "pattern", "dtype", "perm", "layer")


def _text(value: object) -> str:
    """4096, 4096.0 and "4096" alike (a CSV column with gaps reads as float)."""
    number = _number(value)
    return str(int(number)) if number is not None and number.is_integer() else str(value)


def _match_key(d, config: dict) -> tuple:
    return (*(_text(d.get(c)) for c in _MATCH), json.dumps(config, sort_keys=True))


def source_versions(run: str | Path) -> dict[tuple, str]:
    """The backend version (ours: "<kernel source hash> <nvcc version>") of each of our kernels'
    measurements, from the run's cache files (results rows do not carry it). Read as plain
    data; a missing or damaged cache gives fewer versions, never an error."""
    run = Path(run)
    folder = run if run.is_dir() else run.parent
    versions: dict[tuple, str] = {}
    for cache in [folder / "cache.jsonl", *(d / "cache.jsonl" for d in shards.shard_dirs(folder))]:
        try:
            lines = cache.read_text(encoding="utf-8").splitlines() if cache.is_file() else []
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                key = json.loads(line).get("key")
            except (json.JSONDecodeError, AttributeError):
                continue
            ok = isinstance(key, dict) and isinstance(key.get("config"), dict)
            if ok and TRAINING_BACKENDS.get(key.get("backend"), (None, None))[1] is not None:
                version = key.get("backend_version")
                if isinstance(version, str) and version.strip():
                    versions[_match_key(key, key["config"])] = version
    return versions


def _entry(row, versions: dict[tuple, str]) -> dict:
    backend, family = TRAINING_BACKENDS[row["backend"]]
    config = dict(row["config_dict"])
    if family is not None:
        config["family"] = family
    version = versions.get(_match_key(row, row["config_dict"]))
    source_hash = version.split()[0] if version else None  # "<source hash> <nvcc version>"
    perm = row.get("perm")
    return {
        "backend": backend,
        "pass": row["pass"],
        "m": int(row["m"]),
        "n": int(row["n"]),
        "k": int(row["k"]),
        "pattern": str(row["pattern"]),
        "dtype": str(row["dtype"]),
        "config": config,
        "suite_backend": row["backend"],
        "median_ms": float(row["median_ms"]),
        "speedup_vs_dense": _number(row.get("speedup_vs_dense")),
        "source_hash": source_hash,
        "perm": perm if isinstance(perm, str) else "-",
    }


def winners(df: pd.DataFrame, versions: dict[tuple, str] | None = None) -> list[dict]:
    """One entry per (training backend, pass, shape, pattern, dtype, realisation): the fastest
    candidate row among that training backend's suite backends (``versions``: see
    :func:`source_versions`, for the kernel source hash of each winner)."""
    rows = candidates(df)
    if rows.empty:
        return []
    best = rows.sort_values("median_ms", kind="stable").groupby(_GROUP, sort=True).head(1)
    best = best.sort_values(_GROUP, kind="stable")
    return [_entry(r, versions or {}) for _, r in best.iterrows()]


def _device(df: pd.DataFrame, meta: dict) -> dict:
    rec = meta.get("device_before") if isinstance(meta.get("device_before"), dict) else {}
    name = rec.get("name") or (meta.get("fingerprint") or {}).get("device") or "unknown"
    cc = rec.get("capability")
    return {"name": str(name), "capability": None if cc is None else str(cc)}


def _no_rows(run: str, df: pd.DataFrame) -> ca.UsageError:
    have = ", ".join(sorted(map(str, df.backend.dropna().unique()))) or "none"
    want = ", ".join(TRAINING_BACKENDS)
    return ca.UsageError(
        f"{run} has no exportable rows: only correct (status ok) fwd / bwd-data rows of the GPU "
        f"sparse backends {want} can be exported, and this run's backends are {have}; export "
        "a GPU run (python -m suite bench --tier gpu, on a machine with a GPU)"
    )


def _load_run(run: str) -> tuple[pd.DataFrame, dict]:
    path = Path(run)
    if path.is_dir() and not (path / "results.csv").is_file() and shards.shard_dirs(path):
        raise ca.UsageError(
            f"{run} holds shards but no merged results; merge them with "
            f"'python -m suite report {run}' first"
        )
    try:
        return store.load(path)
    except FileNotFoundError as err:
        raise ca.UsageError(
            f"RUN {run}: {err}; give a run folder of 'python -m suite bench' or its results.csv"
        ) from None


def export_tuned(run: str, out: str, force: bool = False) -> tuple[Path, TunedConfigs]:
    """Write the winners of ``run`` to ``out``; every error comes before the file is made."""
    check_output_file(out, "--out", overwrite=force)
    df, meta = _load_run(run)
    csv = Path(run) / "results.csv" if Path(run).is_dir() else Path(run)
    if Path(out).resolve() in (csv.resolve(), csv.with_suffix(".json").resolve()):
        raise ca.UsageError(f"--out {out} is the run's own results file; give another file")
    entries = winners(df, source_versions(run))
    if not entries:
        raise _no_rows(run, df)
    doc = {
        "kind": KIND,
        "schema": SCHEMA,
        "device": _device(df, meta),
        "source": {
            "run": str(run),
            "git_commit": str(meta.get("git_commit") or "unknown"),
            "timestamp": str(meta.get("timestamp") or ""),
        },
        "entries": entries,
    }
    tuned = TunedConfigs.from_dict(doc, out)  # the file training will read, checked here
    atomic_write_text(out, json.dumps(tuned.to_dict(), indent=1) + "\n")
    return Path(out), tuned


def cmd_export_tuned(args) -> int:
    path, tuned = export_tuned(args.run, args.out, args.force)
    counts: dict[str, int] = {}
    for e in tuned.entries:
        counts[e.backend] = counts.get(e.backend, 0) + 1
    per = ", ".join(f"{n} {b}" for b, n in sorted(counts.items()))
    print(f"{len(tuned.entries)} winners ({per}) tuned on {tuned.device['name']} -> {path}")
    return 0


def add_parser(sub, fmt) -> None:
    """The ``export-tuned`` subcommand."""
    s = sub.add_parser(
        "export-tuned",
        formatter_class=fmt,
        help="write a GPU run's winners as a tuned-configs file for training",
        description="Write the fastest correct config of each sparse GEMM (fwd, bwd-data) per "
        "training backend (kernels, cusparselt) of a GPU run as a tuned-configs file; "
        "python -m bimask.train --tuned-configs FILE trains with them.",
        epilog="example: python -m suite export-tuned runs/bench/latest --out tuned.json\n"
        "         python -m bimask.train --backend kernels --tuned-configs tuned.json "
        "--dataset synthetic --model mlp --out runs/tuned",
    )
    s.add_argument("run", help="a run folder of 'python -m suite bench', or its results.csv")
    s.add_argument("--out", required=True, help="the tuned-configs file to write (JSON)")
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    s.set_defaults(func=cmd_export_tuned)


__all__ = ["TRAINING_BACKENDS", "add_parser", "candidates", "export_tuned", "winners"]
