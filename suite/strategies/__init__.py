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

    ``warm`` (a warm start: the best configs of related problems, best first) is evaluated
    first, inside the same budget; configs the space does not allow are skipped and cost
    nothing. The strategy then searches around them (each one starts from the configs already
    in ``objective.seen``)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}")
    with contextlib.suppress(BudgetExhausted):  # running out of budget ends a search normally
        for config in warm_configs(space, warm):
            objective(config)
        STRATEGIES[name](space, objective, random.Random(seed))
    return objective.best()


def warm_configs(space: SearchSpace, warm: Sequence[Config]) -> list[Config]:
    """The warm-start configs that are in this space, in order, each once: the same tunables,
    each value one of the tunable's, and every restriction met (a config of another problem's
    space may break this one's rules)."""
    return [c for c in dict.fromkeys(warm) if _in_space(space, c)]


def _in_space(space: SearchSpace, config: Config) -> bool:
    point = config.to_dict()
    if set(point) != set(space.tunables):
        return False
    return all(point[n] in space.tunables[n] for n in point) and space.allows(point)


__all__ = ["STRATEGIES", "BudgetExhausted", "Objective", "run_strategy", "warm_configs"]
