"""Simulation: replay searches on a committed cache recorded by a real tuning run.

tests/data/sim_cache.jsonl was written by
  python -m suite tune --backend torch_tiled --m 256 --n 512 --k 512 --pattern 2:4 \
      --cache tests/data/sim_cache.jsonl
on a 2-core AMD EPYC CPU (its header records the device). Nothing is executed here.
"""

from dataclasses import replace
from pathlib import Path

import pytest

from suite.backends import get_backend
from suite.cache import ResultCache
from suite.problem import GemmProblem
from suite.simulate import simulated_tune
from suite.tuner import TuneSettings

CACHE = Path(__file__).parent / "data" / "sim_cache.jsonl"
PROBLEM = GemmProblem("nm_gemm", "fwd", 256, 512, 512, "float32", "2:4", layer="cli")


def _never_runs(*args):
    raise AssertionError("simulation must not run a kernel")


@pytest.fixture(scope="module")
def cache():
    return ResultCache(CACHE, None, replay=True)


@pytest.fixture
def backend():
    return replace(get_backend("torch_tiled"), prepare=_never_runs)


def test_committed_cache_is_real_data(cache):
    assert cache.header["fingerprint"]["device"]
    ok = [r for r in cache.rows.values() if r["status"] == "ok"]
    assert len(ok) >= 20 and all(r["median_ms"] > 0 and r["reps"] >= 3 for r in ok)


def test_brute_force_replay_finds_the_recorded_best(cache, backend):
    rows = simulated_tune(PROBLEM, backend, cache, TuneSettings("brute_force"))
    recorded = min(r["median_ms"] for r in cache.rows.values() if r["status"] == "ok")
    best = [r for r in rows if r["is_best"]]
    assert len(best) == 1 and best[0]["median_ms"] == recorded
    assert len(rows) == len(cache.rows)


@pytest.mark.parametrize("strategy", ["random_sample", "annealing"])
def test_budgeted_replays_stay_in_budget_and_land_near_the_best(cache, backend, strategy):
    budget = len(cache.rows) // 2
    rows = simulated_tune(PROBLEM, backend, cache, TuneSettings(strategy, max_evals=budget, seed=1))
    assert len(rows) <= budget
    recorded = sorted(r["median_ms"] for r in cache.rows.values() if r["status"] == "ok")
    found = min(r["median_ms"] for r in rows if r["status"] == "ok")
    assert found <= recorded[len(recorded) // 4]  # in the fastest quarter of all configs


def test_replay_of_an_unknown_problem_is_a_clear_error(cache, backend):
    other = replace(PROBLEM, m=999)
    with pytest.raises(ValueError, match="holds no rows"):
        simulated_tune(other, backend, cache, TuneSettings())


def test_replay_of_a_parameter_whose_recorded_values_mix_types(tmp_path, cache, backend):
    path = tmp_path / "mixed.jsonl"
    rows = list(cache.rows.values())[:2]
    writer = ResultCache(path, {"device": "x"})
    for row, tile in zip(rows, (64, "auto"), strict=True):
        config = '{"tile_n":%s}' % ('"auto"' if tile == "auto" else tile)
        writer.put({"config": config}, {**row, "config": config})
    replayed = simulated_tune(
        PROBLEM, backend, ResultCache(path, None, replay=True), TuneSettings()
    )
    assert sorted(r["config"] for r in replayed) == ['{"tile_n":"auto"}', '{"tile_n":64}']
