import math
import random

import pytest

from suite.space import Config, SearchSpace
from suite.strategies import STRATEGIES, Objective, run_strategy

SPACE = SearchSpace(
    {"x": tuple(range(10)), "y": tuple(range(10))},
    restrictions=(lambda c: c["x"] + c["y"] <= 14, lambda c: c["x"] != 7),
)
OPTIMUM = Config.of({"x": 6, "y": 3})


def surface(config: Config) -> float:  # a bowl with its minimum at (6, 3)
    return (config["x"] - 6) ** 2 + (config["y"] - 3) ** 2 + 1.0


def test_space_size_after_restrictions():
    assert SPACE.size_unrestricted == 100
    expected = sum(1 for x in range(10) for y in range(10) if x + y <= 14 and x != 7)
    assert len(SPACE) == expected
    assert all(SPACE.allows(c.to_dict()) for c in SPACE)


def test_config_is_a_value():
    a, b = Config.of({"y": 2, "x": 1}), Config.from_dict({"x": 1, "y": 2})
    assert a == b and hash(a) == hash(b) and a.to_json() == '{"x":1,"y":2}'
    assert {a: 1}[b] == 1


@pytest.mark.parametrize(
    "name,budget", [("brute_force", None), ("random_sample", None), ("annealing", 45)]
)
def test_strategies_find_the_known_optimum(name, budget):
    objective = Objective(surface, max_evals=budget)
    best, cost = run_strategy(name, SPACE, objective, seed=3)
    assert best == OPTIMUM and cost == 1.0
    assert all(SPACE.allows(c.to_dict()) for c in objective.seen)  # restrictions honoured
    if budget:
        assert len(objective.seen) <= budget


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_are_deterministic_and_respect_budgets(name):
    runs = []
    for _ in range(2):
        objective = Objective(surface, max_evals=12)
        run_strategy(name, SPACE, objective, seed=11)
        runs.append(list(objective.seen))
        assert len(objective.seen) <= 12
    assert runs[0] == runs[1]


def test_time_budget_stops_a_search():
    import time

    def slow(config):
        time.sleep(0.01)
        return surface(config)

    objective = Objective(slow, max_seconds=0.05)
    run_strategy("brute_force", SPACE, objective)
    assert 1 <= len(objective.seen) < 20


def test_failed_configs_count_as_infinite():
    objective = Objective(lambda c: math.inf if c["x"] == 6 else surface(c))
    best, _ = run_strategy("brute_force", SPACE, objective)
    assert best["x"] != 6


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy"):
        run_strategy("bayes", SPACE, Objective(surface), 0)


def test_annealing_neighbours_stay_valid():
    rng = random.Random(0)
    for config in rng.sample(SPACE.configs(), 10):
        assert all(SPACE.allows(n.to_dict()) for n in SPACE.neighbours(config))


@pytest.mark.parametrize("pass_,perm", [("fwd", "-"), ("bwd-data", "greedy")])
def test_quick_spaces_are_small_valid_slices_of_the_full_spaces(pass_, perm):
    from suite.backends import BACKENDS
    from suite.problem import GemmProblem

    problem = GemmProblem("nm_gemm", pass_, 4096, 4096, 4096, "bfloat16", "2:4", perm=perm)
    quick = [b for b in BACKENDS.values() if b.quick_space is not None]
    assert {b.name for b in quick} >= {"bimask_sparse_sm90", "bimask_dense_sm90", "cusparselt"}
    for b in quick:
        full, small = b.space(problem), b.quick_space(problem).configs()
        assert 0 < len(small) <= 32, b.name  # sm80 bwd-data: 8 configs x 4 realisations
        assert all(full.allows(c.to_dict()) for c in small), b.name
