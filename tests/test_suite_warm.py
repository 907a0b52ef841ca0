"""Warm starts in sweeps: related problems' best configs first, inside the budget, only from rows of
the same backend and kernel source; sweeps order problems so related ones come first; the report
marks the winners that came from a warm start."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pandas as pd
import pytest

import suite.sweep as sweep_mod
from suite.backends import BackendFailure, get_backend
from suite.cli import main
from suite.problem import GemmProblem, Layer
from suite.report_search import search_section
from suite.report_tables import WARM_MARK, WARM_NOTE, best_display, per_shape_display, table_lines
from suite.space import Config, SearchSpace
from suite.strategies import STRATEGIES, Objective, run_strategy
from suite.sweep import SweepSpec, gemm_tasks, run_sweep
from suite.sweep_order import chain
from suite.tuner import TuneSettings, tune
from suite.warm import WarmConfig, WarmPool, problem_tuple, warm_count, warm_for

SPACE = SearchSpace({"x": tuple(range(10)), "y": tuple(range(10))})


def bowl(config: Config) -> float:
    return (config["x"] - 7) ** 2 + (config["y"] - 3) ** 2 + 1.0


def row(config: dict, ms: float, backend="b1", source="s1", m=256, status="ok", **kw) -> dict:
    base = {"op": "nm_gemm", "pass": "fwd", "dtype": "float32", "pattern": "2:4", "perm": "-"}
    return {
        **base,
        "m": m,
        "n": 64,
        "k": 256,
        "backend": backend,
        "kernel_source": source,
        "config": json.dumps(config),
        "status": status,
        "median_ms": ms,
        **kw,
    }


WARM = [Config.of({"x": 7, "y": 2}), Config.of({"x": 6, "y": 3}), Config.of({"x": 1, "y": 1})]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_warm_search_is_deterministic_for_a_seed_and_evaluates_the_warm_configs_first(name):
    runs = []
    for _ in range(2):
        objective = Objective(bowl, max_evals=12)
        run_strategy(name, SPACE, objective, 5, WARM)
        runs.append(list(objective.seen.items()))
    assert runs[0] == runs[1]
    assert [c for c, _ in runs[0][:3]] == WARM


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("budget", [2, 3, 7])
def test_the_budget_is_never_exceeded_warm_evaluations_included(name, budget):
    objective = Objective(bowl, max_evals=budget)
    run_strategy(name, SPACE, objective, 0, WARM)
    assert len(objective.seen) == budget
    assert list(objective.seen)[: min(budget, 3)] == WARM[:budget]


def test_the_warm_phase_scans_the_first_warm_configs_ring_within_three_quarters_of_the_budget():
    objective = Objective(bowl, max_evals=12)
    run_strategy("random_sample", SPACE, objective, 3, [Config.of({"x": 0, "y": 0}), WARM[0]])
    seen = list(objective.seen)
    assert seen[:2] == [Config.of({"x": 0, "y": 0}), WARM[0]]
    ring = seen[2:9]  # floor(0.75 * 12) = 9 warm-phase evaluations, the 2 warm configs included
    assert all(sum(c[n] != 0 for n in ("x", "y")) == 1 for c in ring)
    assert set(ring[:2]) == {Config.of({"x": 1, "y": 0}), Config.of({"x": 0, "y": 1})}  # 1 step
    assert [max(c["x"], c["y"]) for c in ring] == sorted(max(c["x"], c["y"]) for c in ring)
    unbudgeted = Objective(bowl)
    run_strategy("brute_force", SPACE, unbudgeted, 0, [WARM[0]])
    assert list(unbudgeted.seen)[:2] == [WARM[0], Config.of({"x": 0, "y": 0})]  # no ring


def test_a_warm_config_outside_the_space_is_skipped_at_no_cost():
    objective = Objective(bowl, max_evals=4)
    run_strategy("tpe", SPACE, objective, 0, [Config.of({"x": 42, "y": 0}), WARM[0]])
    assert Config.of({"x": 42, "y": 0}) not in objective.seen
    assert list(objective.seen)[0] == WARM[0] and len(objective.seen) == 4


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_a_failed_warm_config_costs_an_evaluation_and_never_wins(name):
    bad = Config.of({"x": 7, "y": 3})  # the optimum of the bowl, but it fails

    def cost(config):
        return math.inf if config == bad else bowl(config)

    objective = Objective(cost, max_evals=5)
    best, value = run_strategy(name, SPACE, objective, 1, [bad])
    assert bad in objective.seen and len(objective.seen) == 5
    assert best != bad and math.isfinite(value)


def test_a_warm_start_ignores_rows_of_another_backend_or_kernel_source():
    pool = WarmPool()
    pool.add(
        [
            row({"x": 1, "y": 1}, 1.0, m=512),  # the only usable one
            row({"x": 2, "y": 2}, 0.1, backend="b2", m=512),  # another backend
            row({"x": 3, "y": 3}, 0.1, source="s2", m=512),  # another kernel source
            row({"x": 4, "y": 4}, 0.1, source=float("nan"), m=512),  # no source recorded
            row({"x": 5, "y": 5}, 0.1, status="launch", m=512),  # failed
        ]
    )
    target = ("fwd", "float32", "2:4", "-", 256, 64, 256)
    assert [w.config for w in pool.configs_for(target, "b1", "s1", 5)] == [
        Config.of({"x": 1, "y": 1})
    ]
    assert pool.configs_for(target, "b1", "s3", 5) == []


def test_related_problems_are_ranked_same_pass_first_then_nearest_shape():
    pool = WarmPool()
    pool.add([row({"x": 1, "y": 0}, 1.0, m=4096)])  # far shape
    pool.add([row({"x": 2, "y": 0}, 1.0, m=512, **{"pass": "bwd-data"})])  # near, other pass
    pool.add([row({"x": 3, "y": 0}, 1.0, m=512), row({"x": 4, "y": 0}, 2.0, m=512)])  # nearest
    target = ("fwd", "float32", "2:4", "-", 256, 64, 256)
    got = [w.config["x"] for w in pool.configs_for(target, "b1", "s1", 5)]
    assert got == [3, 1, 2, 4]  # each related problem's best in rank order, then second bests
    assert warm_count(None) == 0 and warm_count(48) == 5 and warm_count(20) == 2


def test_the_sweep_chains_shapes_so_each_problem_has_a_related_one_before_it():
    problems = [
        GemmProblem("nm_gemm", "fwd", m, 64, 256, "float32", "2:4") for m in (64, 4096, 128)
    ]
    problems.append(GemmProblem("nm_gemm", "fwd", 2048, 64, 256, "float32", "2:4"))
    assert [p.m for p in chain(problems)] == [64, 128, 2048, 4096]
    layers = tuple(
        Layer(f"l{i}", o, i_, t)
        for i, (o, i_, t) in enumerate([(256, 512, 64), (4096, 1024, 512), (512, 256, 64)])
    )
    spec = SweepSpec(
        layers,
        ("2:4", "1:4"),
        ("identity",),
        ("torch_dense", "torch_tiled"),
        "float32",
        "cpu",
        TuneSettings("annealing", 8),
    )
    tasks = gemm_tasks(spec)
    assert len(tasks) == len(set(tasks)) == 3 * 5 * 2  # fwd, bwd-data x 2 patterns, bwd-weight
    for i, (problem, backend) in enumerate(tasks):
        earlier = [p for p, b in tasks[:i] if b == backend]
        if any(p.pass_ == problem.pass_ and p.pattern == problem.pattern for p, _ in tasks):
            first = next(
                p
                for p, b in tasks
                if b == backend and p.pass_ == problem.pass_ and p.pattern == problem.pattern
            )
            if problem != first:  # a neighbouring shape of the same pass and pattern came first
                assert any(
                    p.pass_ == problem.pass_ and p.pattern == problem.pattern for p in earlier
                )
    fwd_24 = [
        p.m for p, b in tasks if b == "torch_dense" and p.pass_ == "fwd" and p.pattern == "2:4"
    ]
    assert fwd_24 == [256, 512, 4096]  # the chain: 4096 x 512 last, not between the others


def test_run_sweep_warm_starts_each_problem_from_the_ones_tuned_before(monkeypatch):
    seen = []

    def fake_tune(problem, backend, cache, settings, device, warm=()):
        seen.append((problem, backend.name, [w.config for w in warm]))
        return [
            row(
                {"split_k": 1, "threads": 1, "tile_n": 64},
                1.0,
                backend=backend.name,
                source=backend.kernel_source(),
                m=problem.m,
                is_best=True,
                **{
                    "pass": problem.pass_,
                    "n": problem.n,
                    "k": problem.k,
                    "pattern": problem.pattern,
                    "perm": problem.perm,
                    "layer": problem.layer,
                    "device": "cpu",
                    "tie_with_best": False,
                },
            )
        ]

    monkeypatch.setattr(sweep_mod, "tune", fake_tune)
    monkeypatch.setattr(sweep_mod, "_cached_mask_rows", lambda *a: [])
    layers = (Layer("a", 256, 512, 64), Layer("b", 512, 256, 64))
    spec = SweepSpec(
        layers,
        ("2:4",),
        ("identity",),
        ("torch_tiled",),
        "float32",
        "cpu",
        TuneSettings("annealing", 8),
        passes=("fwd",),
    )
    run_sweep(spec, progress=False)
    assert seen[0][2] == [] and seen[1][2] == [
        Config.of({"split_k": 1, "threads": 1, "tile_n": 64})
    ]
    seen.clear()
    run_sweep(replace(spec, warm_start=False), progress=False)
    assert all(w == [] for *_, w in seen)


def test_tune_marks_warm_rows_and_a_failing_warm_config_never_wins():
    tiled = get_backend("torch_tiled")
    problem = GemmProblem("nm_gemm", "fwd", 256, 64, 256, "float32", "2:4")
    configs = tiled.space(problem).configs()
    bad, good = configs[0], configs[1]

    def prepare(p, inputs, config):
        if config == bad:
            raise BackendFailure("launch", "warm config that fails here")
        return tiled.prepare(p, inputs, config)

    backend = replace(tiled, prepare=prepare)
    settings = TuneSettings("annealing", 3, budget_s=0.002, min_reps=2)
    warm = [WarmConfig(bad, "fwd 2:4 128x32x64"), WarmConfig(good, "fwd 2:4 128x32x64")]
    rows = tune(problem, backend, None, settings, "cpu", warm)
    assert len(rows) == 3
    by_config = {r["config"]: r for r in rows}
    assert by_config[bad.to_json()]["status"] == "launch"
    assert not by_config[bad.to_json()]["is_best"]
    assert [r["warm_start"] for r in rows] == [True, True, False]
    assert rows[0]["warm_from"] == "fwd 2:4 128x32x64" and rows[2]["warm_from"] == ""
    assert {r["kernel_source"] for r in rows} == {tiled.kernel_source()}
    assert warm_for(WarmPool(), problem, backend, settings) == []
    assert problem_tuple(problem) == ("fwd", "float32", "2:4", "-", 256, 64, 256)


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "does not exist"),
        ("hello,world\n1,2\n", "column"),
        ('{"type": "header", "schema": 2}\nnot json\n', "damaged cache line"),
    ],
)
def test_warm_from_a_missing_or_malformed_file_exits_2_before_any_output(
    tmp_path, capsys, content, fragment
):
    given = tmp_path / ("warm.jsonl" if content and content.startswith("{") else "warm.csv")
    if content is not None:
        given.write_text(content)
    out = tmp_path / "out"
    argv = ["bench", "--tier", "cpu", "--quick", "--warm-from", str(given), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --warm-from") and fragment in err[0]
    assert not out.exists()


def test_the_report_marks_exactly_the_winners_that_came_from_a_warm_start(tmp_path):
    best = pd.DataFrame(
        [
            {
                "layer": "a",
                "pass": "fwd",
                "m": 1,
                "n": 1,
                "k": 1,
                "backend": "x",
                "config": "{}",
                "median_ms": 1.0,
                "converged": True,
                "warm_start": True,
                "warm_from": "fwd 2:4 8x8x8",
            },
            {
                "layer": "a",
                "pass": "fwd",
                "m": 1,
                "n": 1,
                "k": 1,
                "backend": "y",
                "config": "{}",
                "median_ms": 2.0,
                "converged": True,
                "warm_start": False,
                "warm_from": "",
            },
            {
                "layer": "b",
                "pass": "fwd",
                "m": 1,
                "n": 1,
                "k": 1,
                "backend": "y",
                "config": "{}",
                "median_ms": 2.0,
                "converged": True,
                "warm_start": float("nan"),
                "warm_from": "",
            },
        ]
    )
    shown = best_display(best)
    assert [WARM_MARK in c for c in shown.config] == [True, False, False]
    assert list(shown.warm_from) == ["fwd 2:4 8x8x8", "-", "-"]
    assert WARM_NOTE in table_lines(shown)
    assert WARM_NOTE not in table_lines(best_display(best.iloc[1:]))
    study = tmp_path / "runs.csv"
    study.write_text(
        "landscape,strategy,budget,warm_from,seed,ratio\n"
        "l1,tpe,48,,0,1.0\nl1,tpe,48,,1,1.2\nl2,tpe,48,,0,1.04\nl1,tpe,48,l2,0,1.0\n"
    )
    meta = {"strategy": "tpe", "max_evals": 48, "warm_start": True, "warm_from": ""}
    text = "\n".join(search_section(meta, best, study))
    assert "strategy `tpe`, up to 48 evaluations" in text
    assert "cold, median best-found / optimum 1.040, 67% of searches within 5%" in text
    assert "simulation" in text and "winners from a warm start (marked (w) below): 1 of 3" in text
    per_shape = pd.DataFrame(
        {
            "sparse_backend": ["s"],
            "dense_backend": ["d"],
            "sparse_warm": [True],
            "dense_warm": [False],
            "sparse_median_ms": [1.0],
            "dense_median_ms": [1.0],
            "sparse_ok": [True],
            "dense_ok": [True],
            "ratio": [1.0],
            "ratio_lo": [1.0],
            "ratio_hi": [1.0],
            "converged": [True],
            "winner": ["s"],
            "winner_clear": [True],
        }
    )
    shown = per_shape_display(per_shape)
    assert list(shown.best_sparse) == [f"s {WARM_MARK}"] and list(shown.best_dense) == ["d"]


def test_a_resumed_warm_sweep_replays_the_same_searches_so_the_plan_finds_them_all_cached(
    tmp_path, monkeypatch
):
    from suite.cache import ResultCache
    from suite.device import fingerprint
    from suite.plan import make_plan

    layers = (Layer("a", 512, 512, 128), Layer("b", 512, 768, 128))  # 12+ configs each
    spec = SweepSpec(
        layers,
        ("2:4",),
        ("identity",),
        ("torch_tiled",),
        "float32",
        "cpu",
        TuneSettings("annealing", 4, budget_s=0.002, min_reps=2),
        passes=("fwd",),
    )
    monkeypatch.setattr(sweep_mod, "_cached_mask_rows", lambda *a: [])  # GEMMs only
    cache = ResultCache(tmp_path / "cache.jsonl", fingerprint("cpu"))
    df = run_sweep(spec, cache, progress=False)
    gemm = df[df.op == "nm_gemm"]
    assert gemm.warm_start.astype(bool).sum() >= 1  # the second problem started from the first
    plan = make_plan(spec, ResultCache(tmp_path / "cache.jsonl", fingerprint("cpu")))
    assert all(t.cached and t.configs == 0 for t in plan.tasks if t.kind == "gemm")
    cold = make_plan(replace(spec, warm_start=False), cache)
    assert any(t.configs > 0 for t in cold.tasks if t.kind == "gemm")  # other searches: missing
