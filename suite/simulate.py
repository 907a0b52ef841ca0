"""Simulation: replay a search strategy on timings stored in a cache, running nothing."""

from __future__ import annotations

import json
import math
import warnings

from suite.backends.base import Backend
from suite.cache import ResultCache
from suite.problem import GemmProblem
from suite.space import Config, SearchSpace
from suite.strategies import Objective, run_strategy
from suite.tuner import TuneSettings, mark_best


def _order(value: object) -> tuple[str, object]:
    """Sort key for one parameter's recorded values, which may mix types (1 and "auto")."""
    return (type(value).__name__, value)


def simulated_tune(
    problem: GemmProblem, backend: Backend, cache: ResultCache, settings: TuneSettings
) -> list[dict]:
    """Like :func:`suite.tuner.tune`, with every config's cost read from ``cache``."""
    rows_by_config = {}
    for row in cache.rows.values():
        same = all(str(row.get(k)) == str(v) for k, v in problem.key().items() if k != "layer")
        if same and row.get("backend") == backend.name:
            rows_by_config[row["config"]] = row
    if not rows_by_config:
        raise ValueError(f"the cache holds no rows for {backend.name} on {problem.key()}")
    rows: list[dict] = []

    def cost(config: Config) -> float:
        row = rows_by_config.get(config.to_json())
        if row is None:
            warnings.warn(
                f"config {config.to_json()} is not in the cache; counted as failed", stacklevel=2
            )
            return math.inf
        rows.append(dict(row))
        return row["median_ms"] if row["status"] == "ok" else math.inf

    space_configs = [Config.from_dict(json.loads(c)) for c in rows_by_config]
    names = sorted({k for c in space_configs for k in c.to_dict()})
    space = SearchSpace(
        {n: tuple(sorted({c.to_dict()[n] for c in space_configs}, key=_order)) for n in names},
        (lambda d, allowed=set(rows_by_config): Config.of(d).to_json() in allowed,),
    )
    run_strategy(
        settings.strategy,
        space,
        Objective(cost, settings.max_evals, settings.max_seconds),
        settings.seed,
    )
    mark_best(rows)
    return rows
