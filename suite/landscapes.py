"""Tuning landscapes: exhaustive tuning runs of a kernel, as data (NAME.csv.gz + NAME.json).

The format is that of ``benchmarks/landscapes/`` (a copy of the shared landscapes; see its
README): the CSV holds one row per config of the space, the tunables' columns, ``time_ms``
(empty where the config failed) and ``status`` (``ok`` or a failure class); the JSON sidecar
names the source, the tunables with their value lists, the number of configs and failures, and
the best time. Files are parsed and validated, never executed. A failed config is part of the
space: it costs an evaluation and never wins.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from suite.space import Config, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "benchmarks" / "landscapes"
RESERVED = ("time_ms", "status")


class LandscapeError(ValueError):
    """A landscape file that is missing or malformed (the CLI prints it as one error line)."""


@dataclass(frozen=True)
class ListedSpace(SearchSpace):
    """A search space that is exactly a list of configs (a landscape's rows)."""

    listed: tuple[Config, ...] = ()
    _members: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_members", frozenset(self.listed))

    def allows(self, config) -> bool:
        return Config.of(config) in self._members

    def __iter__(self):
        return iter(self.listed)

    def configs(self) -> list[Config]:
        return list(self.listed)

    def __len__(self) -> int:
        return len(self.listed)


@dataclass(frozen=True)
class Landscape:
    """One exhaustively tuned kernel: its space and every config's time (inf where it failed)."""

    name: str
    meta: dict
    space: ListedSpace
    times: dict[Config, float]  # math.inf for a failed config
    status: dict[Config, str]

    def __repr__(self) -> str:
        return f"Landscape({self.name!r}, {len(self.times)} configs)"

    @property
    def best_ms(self) -> float:
        """The optimum, from the landscape's own rows (not the sidecar's claim)."""
        return min(self.times.values())

    def cost(self, config: Config) -> float:
        """The config's time; math.inf for a failed config or one outside the space."""
        return self.times.get(config, math.inf)

    def ranked(self) -> list[Config]:
        """The configs that ran, fastest first (ties in the file's order)."""
        ok = [c for c in self.space.listed if math.isfinite(self.times[c])]
        return sorted(ok, key=self.times.__getitem__)


def _value(text: str, allowed: tuple, where: str) -> object:
    for value in allowed:
        if str(value) == text:
            return value
    raise LandscapeError(f"{where}: value {text!r} is not in the sidecar's list {list(allowed)}")


def _sidecar(json_path: Path) -> dict:
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as err:
        why = f"{err.msg}, line {err.lineno}"
        raise LandscapeError(f"{json_path}: not valid JSON ({why})") from None
    if not isinstance(meta, dict):
        raise LandscapeError(f"{json_path}: must hold a JSON object")
    tunables = meta.get("tunables")
    if not isinstance(tunables, dict) or not tunables:
        raise LandscapeError(f"{json_path}: 'tunables' must map each tunable to its values")
    for name, values in tunables.items():
        if name in RESERVED or not isinstance(values, list) or not values:
            raise LandscapeError(f"{json_path}: tunable {name!r} needs a non-empty value list")
        if any(not isinstance(v, (int, float, str)) or isinstance(v, bool) for v in values):
            raise LandscapeError(f"{json_path}: tunable {name!r} values must be numbers/strings")
    for key in ("configs", "failed"):
        if not isinstance(meta.get(key), int) or meta[key] < 0:
            raise LandscapeError(f"{json_path}: {key!r} must be a count (an integer >= 0)")
    return meta


def paths_of(path: str | Path) -> tuple[Path, Path]:
    """(NAME.csv.gz, NAME.json) for a path naming either file or the common stem."""
    path = Path(path)
    name = path.name
    for suffix in (".csv.gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return path.with_name(f"{name}.csv.gz"), path.with_name(f"{name}.json")


def is_landscape(path: str | Path) -> bool:
    """True for a path that names a landscape (NAME.csv.gz or NAME.json, not a .jsonl cache)."""
    return str(path).endswith((".csv.gz", ".json"))


def load(path: str | Path) -> Landscape:
    """Read and validate one landscape; raise :class:`LandscapeError` naming what is wrong."""
    try:
        return _load(path)
    except LandscapeError as err:
        raise LandscapeError(f"{err}; see benchmarks/landscapes/README.md for the format") from None


def _load(path: str | Path) -> Landscape:
    csv_path, json_path = paths_of(path)
    for p in (csv_path, json_path):
        if not p.is_file():
            raise LandscapeError(
                f"landscape file {p} does not exist; a landscape is "
                "NAME.csv.gz plus NAME.json side by side"
            )
    meta = _sidecar(json_path)
    tunables = {n: tuple(v) for n, v in meta["tunables"].items()}
    try:
        text = gzip.decompress(csv_path.read_bytes()).decode()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise LandscapeError(f"{csv_path}: not a gzip-compressed UTF-8 CSV ({err})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    expected = [*tunables, *RESERVED]
    if header is None or sorted(header) != sorted(expected):
        raise LandscapeError(
            f"{csv_path}: header {header} must be the sidecar's tunables plus {list(RESERVED)}"
        )
    col = {name: header.index(name) for name in expected}
    times: dict[Config, float] = {}
    status: dict[Config, str] = {}
    for line, row in enumerate(reader, start=2):
        where = f"{csv_path}, line {line}"
        if len(row) != len(header):
            raise LandscapeError(f"{where}: {len(row)} fields, the header has {len(header)}")
        config = Config.of({n: _value(row[col[n]], tunables[n], where) for n in tunables})
        if config in times:
            raise LandscapeError(f"{where}: config {config.to_json()} is listed twice")
        state, raw = row[col["status"]], row[col["time_ms"]]
        if state == "ok":
            try:
                t = float(raw)
            except ValueError:
                why = f"time_ms {raw!r} of an ok config is not a number"
                raise LandscapeError(f"{where}: {why}") from None
            if not (math.isfinite(t) and t > 0):
                raise LandscapeError(f"{where}: time_ms {raw!r} of an ok config must be > 0")
        elif not state or raw:
            raise LandscapeError(f"{where}: a failed config needs a status and an empty time_ms")
        else:
            t = math.inf
        times[config], status[config] = t, state
    failed = sum(1 for s in status.values() if s != "ok")
    if len(times) != meta["configs"] or failed != meta["failed"]:
        raise LandscapeError(
            f"{csv_path}: {len(times)} configs ({failed} failed); the sidecar "
            f"says {meta['configs']} ({meta['failed']} failed)"
        )
    if failed == len(times):
        raise LandscapeError(f"{csv_path}: no config ran, so there is no optimum to measure")
    best = min(times.values())
    claimed = meta.get("best_ms")
    if claimed is not None and not math.isclose(float(claimed), best, rel_tol=1e-9):
        raise LandscapeError(f"{json_path}: best_ms {claimed} disagrees with the rows' best {best}")
    name = str(meta.get("name") or csv_path.name[: -len(".csv.gz")])
    space = ListedSpace(tunables, (), tuple(times))
    return Landscape(name, meta, space, times, status)


def load_all(paths: list[str | Path]) -> list[Landscape]:
    """Landscapes named by files or folders (every NAME.json in a folder), sorted by name."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        if path.is_dir():
            for p in sorted(path.glob("*.json")):
                found[p.stem] = p
        else:
            found[paths_of(path)[1].stem] = path
    if not found:
        raise LandscapeError(f"no landscape (NAME.json + NAME.csv.gz) in {list(map(str, paths))}")
    return [load(found[k]) for k in sorted(found)]
