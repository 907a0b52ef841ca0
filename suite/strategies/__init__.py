"""Search strategies, a registry: name -> function(space, objective, rng)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence

from suite.space import Config, SearchSpace
from suite.strategies.annealing import simulated_annealing
from suite.strategies.base import BudgetExhausted, Objective, Strategy
from suite.strategies.brute_force import brute_force
from suite.strategies.population_tabu import population_tabu
from suite.strategies.random_sample import random_sample
from suite.strategies.tpe import tpe
from suite.strategies.warm_phase import warm_configs, warm_phase

STRATEGIES: dict[str, Strategy] = {
    "brute_force": brute_force,
    "random_sample": random_sample,
    "annealing": simulated_annealing,
    "population_tabu": population_tabu,
    "tpe": tpe,
}


def run_strategy(
    name: str,
    space: SearchSpace,
    objective: Objective,
    seed: int = 0,
    warm: Sequence[Config] = (),
) -> tuple[Config | None, float]:
    """Run strategy ``name`` under the objective's budget; returns the best (config, cost).

    ``warm`` (a warm start: the best configs of related problems, nearest first) is evaluated
    first, with the one-tunable ring of its first config, inside the same budget
    (:mod:`suite.strategies.warm_phase`); configs the space does not hold are skipped and cost
    nothing. The strategy then searches around them (each one starts from the configs already
    in ``objective.seen``)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    rng = random.Random(seed)
    with contextlib.suppress(BudgetExhausted):  # running out of budget ends a search normally
        warm_phase(space, objective, warm, rng)
        STRATEGIES[name](space, objective, rng)
    return objective.best()


__all__ = ["STRATEGIES", "BudgetExhausted", "Objective", "run_strategy", "warm_configs"]
