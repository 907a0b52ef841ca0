"""Simulation: replay a search strategy on timings stored in a cache, running nothing."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence

from suite.backends.base import Backend
from suite.cache import ResultCache
from suite.landscapes import Landscape
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


def simulate_landscape(
    landscape: Landscape, settings: TuneSettings, warm: Sequence[Config] = ()
) -> Objective:
    """Run one search on a landscape's recorded times; returns the spent :class:`Objective`.

    Every evaluation, failed configs included, counts against ``settings.max_evals``; a failed
    config costs math.inf and so never wins. ``warm`` configs (e.g. the best of a related
    landscape) are evaluated first, inside the same budget, and the strategy sees them.
    """
    objective = Objective(landscape.cost, settings.max_evals, settings.max_seconds)
    run_strategy(settings.strategy, landscape.space, objective, settings.seed, warm)
    return objective


def landscape_rows(landscape: Landscape, objective: Objective) -> list[dict]:
    """The evaluated configs as tune-style rows (config, status, median_ms, is_best)."""
    best, best_ms = objective.best()
    return [
        {
            "config": c.to_json(),
            "status": landscape.status.get(c, "missing"),
            "median_ms": t,
            "ratio": t / landscape.best_ms,
            "is_best": c == best and math.isfinite(best_ms),
        }
        for c, t in objective.seen.items()
    ]
