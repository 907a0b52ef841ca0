"""Search strategies, a registry: name -> function(space, objective, rng)."""

from __future__ import annotations

import contextlib
import random

from suite.space import Config, SearchSpace
from suite.strategies.annealing import simulated_annealing
from suite.strategies.base import BudgetExhausted, Objective, Strategy
from suite.strategies.brute_force import brute_force
from suite.strategies.population_tabu import population_tabu
from suite.strategies.random_sample import random_sample
from suite.strategies.tpe import tpe

STRATEGIES: dict[str, Strategy] = {
    "brute_force": brute_force,
    "random_sample": random_sample,
    "annealing": simulated_annealing,
    "population_tabu": population_tabu,
    "tpe": tpe,
}


def run_strategy(
    name: str, space: SearchSpace, objective: Objective, seed: int = 0
) -> tuple[Config | None, float]:
    """Run strategy ``name`` under the objective's budget; returns the best (config, cost)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    with contextlib.suppress(BudgetExhausted):  # running out of budget ends a search normally
        STRATEGIES[name](space, objective, random.Random(seed))
    return objective.best()


__all__ = ["STRATEGIES", "BudgetExhausted", "Objective", "run_strategy"]
