"""Warm starts: a sweep's searches evaluate the best configs of related problems first.

*Related*: a problem already tuned with the same backend and the same kernel source (the rows'
``kernel_source``: for our kernels the hash of their CUDA source, for library backends their
version). Rows of another backend or source, rows without a source (written before rows carried
one), failed rows and rows of the problem itself from this run never feed a warm start.

*Ranking* (nearest first): the same pass, then the same dtype, then the distance
``sum over m, n, k of |log2(x / x')|`` plus 1 for another pattern and 0.5 for another
permutation strategy; ties go to this run's rows before another run's, then to the one tuned
first. The warm list takes each related problem's fastest config in rank order, then each one's
second fastest, and so on, every config once, at most :func:`warm_count` of them (2 at 20
evaluations, 5 from 40). The search (``suite.strategies.run_strategy``) evaluates them first,
with the one-tunable ring of the first, inside the budget, skipping those the new problem's
space does not hold, then searches around them (:mod:`suite.strategies.warm_phase`).

Sources: this run (the rows of the problems tuned before, in sweep order, so a resumed sweep
derives the same lists) and ``--warm-from RUN_OR_CACHE`` (another run's folder, its
``results.csv``, or a ``cache.jsonl``: e.g. the same kernels on another device).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bimask import cli_args as ca
from suite.cache import CacheError, ResultCache
from suite.space import Config

THIS_RUN = "this run"
GEMM_OPS = ("nm_gemm", "gemm")
NEEDED = ("op", "backend", "kernel_source", "pass", "pattern", "m", "n", "k", "dtype", "config")


def warm_count(max_evals: int | None) -> int:
    """How many warm configs a search of ``max_evals`` evaluations starts with (0: none)."""
    return 0 if max_evals is None else max(1, min(5, max_evals // 8))


@dataclass(frozen=True)
class WarmConfig:
    config: Config
    source: str  # the related problem it was best on, e.g. "fwd 2:4 3072x256x768"


@dataclass(frozen=True)
class Tuned:
    """One related problem's ok configs, fastest first."""

    backend: str
    kernel_source: str
    problem: tuple  # (pass, dtype, pattern, perm, m, n, k)
    configs: tuple[Config, ...]
    origin: str  # THIS_RUN or the file the rows came from
    order: int

    @property
    def label(self) -> str:
        pass_, _, pattern, perm, m, n, k = self.problem
        perm = f" {perm}" if perm not in ("-", "", None) else ""
        where = "" if self.origin == THIS_RUN else f" in {self.origin}"
        return f"{pass_} {pattern}{perm} {m}x{n}x{k}{where}"


def _problem(row: dict) -> tuple:
    perm = row.get("perm")
    perm = "-" if perm is None or (isinstance(perm, float) and math.isnan(perm)) else str(perm)
    return (
        str(row["pass"]),
        str(row["dtype"]),
        str(row["pattern"]),
        perm,
        int(row["m"]),
        int(row["n"]),
        int(row["k"]),
    )


def _usable(row: dict) -> bool:
    source = row.get("kernel_source")
    return (
        row.get("op") in GEMM_OPS
        and row.get("status") == "ok"
        and isinstance(source, str)
        and bool(source)
        and isinstance(row.get("median_ms"), (int, float))
        and math.isfinite(row["median_ms"])
    )


class WarmPool:
    """The tuned problems a warm start can draw on."""

    def __init__(self) -> None:
        self.tuned: list[Tuned] = []

    def add(self, rows: list[dict], origin: str = THIS_RUN) -> int:
        """Add the usable rows (grouped per backend, source and problem); returns how many."""
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            if _usable(row):
                key = (row["backend"], row["kernel_source"], _problem(row))
                groups.setdefault(key, []).append(row)
        for (backend, source, problem), group in groups.items():
            group.sort(key=lambda r: r["median_ms"])
            configs = tuple(dict.fromkeys(Config.from_dict(json.loads(r["config"])) for r in group))
            self.tuned.append(Tuned(backend, source, problem, configs, origin, len(self.tuned)))
        return sum(len(g) for g in groups.values())

    def related(self, problem: tuple, backend: str, kernel_source: str) -> list[Tuned]:
        """The tuned problems that may warm-start ``problem``, nearest first."""
        out = [
            t
            for t in self.tuned
            if t.backend == backend
            and t.kernel_source == kernel_source
            and not (t.problem == problem and t.origin == THIS_RUN)
        ]
        return sorted(out, key=lambda t: _rank(problem, t))

    def configs_for(
        self, problem: tuple, backend: str, kernel_source: str, count: int
    ) -> list[WarmConfig]:
        """Up to ``count`` warm configs: the related problems' best, then their second best..."""
        related = self.related(problem, backend, kernel_source)
        out: dict[Config, WarmConfig] = {}
        depth = max((len(t.configs) for t in related), default=0)
        for level in range(depth):
            for t in related:
                if len(out) >= count:
                    return list(out.values())
                if level < len(t.configs) and t.configs[level] not in out:
                    out[t.configs[level]] = WarmConfig(t.configs[level], t.label)
        return list(out.values())


def _rank(problem: tuple, t: Tuned) -> tuple:
    pass_, dtype, pattern, perm, *shape = problem
    o_pass, o_dtype, o_pattern, o_perm, *o_shape = t.problem
    distance = sum(abs(math.log2(a / b)) for a, b in zip(shape, o_shape, strict=True) if a and b)
    distance += (pattern != o_pattern) + 0.5 * (perm != o_perm)
    return (pass_ != o_pass, dtype != o_dtype, round(distance, 9), t.origin != THIS_RUN, t.order)


def problem_tuple(problem) -> tuple:
    """A :class:`suite.problem.GemmProblem` as the pool's problem identity."""
    return _problem(problem.key())


def warm_for(pool: WarmPool, problem, backend, settings, enabled: bool = True) -> list[WarmConfig]:
    """The warm list of one search of a sweep (none when off or when the search is unbudgeted:
    an exhaustive search gains nothing from it)."""
    count = warm_count(settings.max_evals) if enabled else 0
    if not count:
        return []
    return pool.configs_for(problem_tuple(problem), backend.name, backend.kernel_source(), count)


def _rows_of_csv(path: Path) -> list[dict]:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ca.UsageError(
            f"--warm-from {path}: not a results CSV ({err}); give a run folder"
        ) from None
    if missing := [c for c in NEEDED if c not in df]:
        raise ca.UsageError(
            f"--warm-from {path}: no {', '.join(missing)} column (a run written before rows "
            "recorded their kernel source?); give a run or cache of this suite version"
        )
    return df.to_dict("records")


def _rows_of_cache(path: Path) -> list[dict]:
    try:
        cache = ResultCache(path, None, replay=True)
    except (CacheError, FileNotFoundError) as err:
        raise ca.UsageError(f"--warm-from {err}") from None
    return [r for r in cache.rows.values() if "rows" not in r]


def load_warm_from(given: str | None) -> tuple[list[dict], str]:
    """The rows of ``--warm-from`` (a run folder, its results.csv, or a cache .jsonl) and the
    name they are labelled with; ``([], "")`` when not given. Bad input: :class:`UsageError`."""
    if not given:
        return [], ""
    path = Path(given)
    if path.is_dir():
        found = [p for p in (path / "results.csv", path / "cache.jsonl") if p.is_file()]
        if not found:
            raise ca.UsageError(
                f"--warm-from {path}: no results.csv or cache.jsonl in it; give a run folder"
            )
        path = found[0]
    elif not path.is_file():
        raise ca.UsageError(f"--warm-from {path} does not exist; give a run folder or a cache")
    rows = _rows_of_cache(path) if path.suffix == ".jsonl" else _rows_of_csv(path)
    if not WarmPool().add(rows, str(path)):
        raise ca.UsageError(
            f"--warm-from {path}: no ok GEMM rows with a kernel source; give a run or cache "
            "that this suite version wrote"
        )
    return rows, str(path)


def add_options(parser) -> None:
    """The sweep's warm-start options (``suite bench``)."""
    parser.add_argument(
        "--no-warm-start",
        action="store_true",
        help="search every problem cold (default: budgeted searches evaluate the best configs "
        "of related problems already tuned first, inside the budget)",
    )
    parser.add_argument(
        "--warm-from",
        metavar="RUN_OR_CACHE",
        help="also warm-start from another run (its folder, results.csv or cache.jsonl), e.g. "
        "the same kernels on another device; only rows of the same backend and kernel source",
    )


def spec_options(args) -> dict:
    """The SweepSpec fields of ``--no-warm-start`` / ``--warm-from`` (reads the file: call it
    with the other argument checks, before anything is written)."""
    rows, origin = load_warm_from(args.warm_from)
    if rows and args.no_warm_start:
        raise ca.UsageError("--warm-from needs warm starts; drop --no-warm-start or --warm-from")
    return {"warm_start": not args.no_warm_start, "warm_rows": tuple(rows), "warm_origin": origin}


def search_meta(spec) -> dict:
    """What the run's metadata says about its searches (the report states it)."""
    s = spec.settings
    return {
        "strategy": s.strategy,
        "max_evals": s.max_evals,
        "warm_start": bool(spec.warm_start and warm_count(s.max_evals)),
        "warm_from": spec.warm_origin,
    }
