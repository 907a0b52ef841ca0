"""population_tabu and tpe: they find the optimum of a small bowl in few evaluations, never
spend more than their budget, never let a failed config win, and use a warm start."""

from __future__ import annotations

import math

import pytest

from suite.space import Config, SearchSpace
from suite.strategies import Objective, run_strategy

SPACE = SearchSpace(
    {"x": tuple(range(12)), "y": tuple(range(12)), "z": ("a", "b", "c")},
    restrictions=(lambda c: c["x"] + c["y"] <= 18,),
)


def bowl(config: Config) -> float:
    return (config["x"] - 8) ** 2 + (config["y"] - 2) ** 2 + (config["z"] != "b") + 1.0


@pytest.mark.parametrize("name", ["population_tabu", "tpe"])
def test_finds_the_optimum_of_a_bowl_in_a_tenth_of_the_space(name):
    found = []
    for seed in range(5):
        objective = Objective(bowl, max_evals=40)
        found.append(run_strategy(name, SPACE, objective, seed)[1])
        assert len(objective.seen) <= 40
        assert all(SPACE.allows(c.to_dict()) for c in objective.seen)
    assert sorted(found)[2] <= 2.0  # the median search ends at the optimum or next to it


@pytest.mark.parametrize("name", ["annealing", "population_tabu", "tpe"])
def test_failed_configs_never_win(name):
    def cost(config):  # the bowl's best region fails
        return math.inf if abs(config["x"] - 8) <= 1 else bowl(config)

    objective = Objective(cost, max_evals=30)
    best, value = run_strategy(name, SPACE, objective, 2)
    assert math.isfinite(value) and abs(best["x"] - 8) > 1


@pytest.mark.parametrize("name", ["annealing", "tpe"])  # population_tabu: one member of three
def test_a_warm_start_is_searched_around(name):
    for seed in range(3):
        objective = Objective(bowl, max_evals=12)
        near = Config.of({"x": 8, "y": 3, "z": "b"})  # one step from the optimum
        objective(near)
        _, value = run_strategy(name, SPACE, objective, seed)
        assert next(iter(objective.seen)) == near and len(objective.seen) <= 12
        assert value == 1.0  # 12 evaluations from a random start rarely find it (tested below)


def test_without_the_warm_start_the_same_budget_rarely_finds_it():
    found = [
        run_strategy("annealing", SPACE, Objective(bowl, max_evals=12), s)[1] for s in range(3)
    ]
    assert sum(v == 1.0 for v in found) <= 1
