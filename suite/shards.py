"""Sharded runs: a run folder OUT with one ``OUT/shard-i`` per shard, merged into OUT.

A shard is complete when its ``results.csv`` and ``results.json`` exist and the sidecar records
``shard: [i, n]``. A merge needs all n shards (or an explicit ``partial=True``, which labels the
merged run partial and names the missing shards), and it is redone whenever a shard changed
since the last merge: the merged sidecar records each shard's sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from suite import store


class IncompleteShardsError(ValueError):
    """Some shards of a run are missing or unfinished."""


@dataclass
class ShardState:
    """What the shard folders of a run hold."""

    count: int = 0  # n, from the shards' sidecars (0: no complete shard)
    complete: dict[int, Path] = field(default_factory=dict)
    unfinished: list[Path] = field(default_factory=list)  # a folder without results yet

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.complete]

    def describe_missing(self) -> str:
        return ", ".join(f"{i}/{self.count}" for i in self.missing)


def shard_dirs(run: Path) -> list[Path]:
    return sorted(p for p in Path(run).glob("shard-*") if p.is_dir())


def scan(run: str | Path) -> ShardState:
    """Read the shard folders of ``run``; raises ``ValueError`` on shards of different n."""
    state, counts = ShardState(), {}
    for d in shard_dirs(Path(run)):
        csv = d / "results.csv"
        meta = store.load_meta(csv) if csv.is_file() else {}
        shard = meta.get("shard")
        if not csv.is_file() or not shard:
            state.unfinished.append(d)
            continue
        i, n = (int(x) for x in shard)
        if d.name != f"shard-{i}":
            raise ValueError(f"{d} holds shard {i}/{n} according to its results.json")
        counts.setdefault(n, []).append(d.name)
        state.complete[i] = d
    if len(counts) > 1:
        seen = "; ".join(f"n={n}: {', '.join(names)}" for n, names in sorted(counts.items()))
        raise ValueError(
            f"the shards of {run} come from different splits ({seen}); "
            "rerun them with one --shard i/n or remove the stale shard folders"
        )
    state.count = next(iter(counts), 0)
    return state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fingerprints(state: ShardState) -> dict[str, str]:
    return {str(i): _sha256(d / "results.csv") for i, d in sorted(state.complete.items())}


def is_current(run: Path, state: ShardState) -> bool:
    """True when ``run``'s merged results were made from exactly these shard files."""
    csv = Path(run) / "results.csv"
    if not csv.is_file():
        return False
    return store.load_meta(csv).get("merged_shards") == _fingerprints(state)


def merge_shards(run: str | Path, *, partial: bool = False) -> bool:
    """Merge ``run``'s shards into ``run/results.csv`` unless it is already current.

    Refuses (``IncompleteShardsError``) when shards are missing, naming them, unless
    ``partial``; a partial merge is labelled in its sidecar (``partial``, ``missing_shards``).
    Returns True when it (re)merged. Raises ``FileNotFoundError`` when there is no shard.
    """
    run = Path(run)
    state = scan(run)
    if not state.complete:
        where = f" ({', '.join(d.name for d in state.unfinished)} unfinished)"
        raise FileNotFoundError(
            f"{run} has no finished shard{where if state.unfinished else ''}; "
            "run the shards first (python -m suite bench --shard i/n --out RUN)"
        )
    if state.missing and not partial:
        raise IncompleteShardsError(
            f"{run}: shard(s) {state.describe_missing()} missing or unfinished "
            f"({len(state.complete)} of {state.count} done); run them with --shard, or pass "
            "--partial for a report labelled partial"
        )
    if is_current(run, state):
        return False
    first = store.load_meta(state.complete[min(state.complete)] / "results.csv")
    meta = {
        **{k: v for k, v in first.items() if k not in ("schema_version", "command", "timestamp")},
        "shard": None,
        "shards": state.count,
        "merged_shards": _fingerprints(state),
        "partial": bool(state.missing),
        "missing_shards": [f"{i}/{state.count}" for i in state.missing],
    }
    store.merge_runs([state.complete[i] for i in sorted(state.complete)], run, meta)
    return True


def partial_note(meta: dict) -> str | None:
    """The line a report of a partial merge opens with (None for a complete run)."""
    if not meta.get("partial"):
        return None
    missing = meta.get("missing_shards") or []
    return (
        f"**PARTIAL RUN: {len(missing)} of {meta.get('shards', '?')} shards missing "
        f"({', '.join(missing)}); best configs and speed-ups cover only the shards that are "
        "done.**"
    )
