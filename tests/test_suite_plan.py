"""The time-bounded sweep: plan, headline first, skipped tasks recorded, wall-clock re-check."""

import pandas as pd
import pytest

import suite.sweep as sweep_mod
from suite.backends import get_backend
from suite.budget import bench_budget, render, skipped_section, write_skipped
from suite.cache import ResultCache
from suite.cli import main
from suite.costmodel import Calibration, CostModel
from suite.device import fingerprint
from suite.plan import make_plan, rank
from suite.problem import GemmProblem, Layer
from suite.sweep import SweepSpec, run_sweep
from suite.tuner import TuneSettings, base_row, tune

HEADLINE = Layer("vit_l.fc1", 4096, 1024, 13008)  # in suite/shapes/headline.toml
SMALL = [Layer("small.a", 256, 512, 64), Layer("small.b", 512, 256, 128)]


def _spec(**kw) -> SweepSpec:
    base = dict(
        layers=(*SMALL, HEADLINE),  # the headline layer last: the plan must move it first
        patterns=("1:4", "2:4"),
        perms=("identity", "greedy"),
        backends=("torch_dense", "torch_tiled"),
        dtype="float32",
        device="cpu",
        settings=TuneSettings(budget_s=0.05),
    )
    return SweepSpec(**{**base, **kw})


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def simulated(monkeypatch):
    """tune and the mask rows cost ``factor`` x their estimate on a fake clock; nothing runs."""
    clock, state = FakeClock(), {"factor": 1.0, "plan": None, "ran": []}

    def advance(kind, task):
        t = next(t for t in state["plan"].tasks if t.kind == kind and t.task == task)
        clock.now += t.estimate_s * state["factor"]
        state["ran"].append(t)

    def fake_tune(problem, backend, cache, settings, device, warm=()):
        advance("gemm", (problem, backend.name))
        row = {**base_row(problem, backend, None, device), "median_ms": 1.0, "iqr_ms": 0.0}
        return [{**row, "is_best": True, "tie_with_best": False}]

    def fake_masks(cache, layer, pattern, perm, spec):
        advance("mask", (layer, pattern, perm))
        return []

    monkeypatch.setattr(sweep_mod, "tune", fake_tune)
    monkeypatch.setattr(sweep_mod, "_cached_mask_rows", fake_masks)
    return clock, state


def test_a_budget_runs_the_headline_first_and_records_what_it_skips(tmp_path, simulated):
    clock, state = simulated
    spec = _spec()
    whole = make_plan(spec, None)  # no budget: every task, in sweep order
    assert not whole.skipped and whole.tasks[0].task[0].layer == "small.a"
    head = sum(t.estimate_s for t in whole.tasks if t.rank == 0)
    assert 0 < head < whole.estimate_s / 2  # the headline is a minority of the work
    plan = make_plan(spec, None, budget_s=head * (1 + 1e-9), clock=clock)
    state["plan"] = plan
    assert [t.rank for t in plan.tasks[:5]] == [0] * 5  # 2:4 fwd, bwd-data greedy x 2; masks
    assert all(not t.skip_reason for t in plan.tasks if t.rank == 0)
    assert plan.skipped and plan.estimate_s <= head * (1 + 1e-9)
    df = run_sweep(plan.spec, None, progress=False, plan=plan)
    assert set(df.layer) == {"vit_l.fc1"} and set(df.pattern) == {"2:4"}
    assert [t.rank for t in state["ran"]][:5] == [0] * 5
    path = write_skipped(plan, tmp_path)
    skipped = pd.read_csv(path)
    assert len(skipped) == len(plan.skipped) and (skipped.status == "skipped").all()
    assert skipped.reason.str.match(r"time budget: estimated \d+ s, \d+ s left").all()
    assert {"small.a", "small.b"} <= set(skipped.layer)
    assert "## Skipped by the time budget" in skipped_section(tmp_path)
    assert "would skip" in render(plan)


def test_b_cached_tasks_are_planned_at_zero_cost(tmp_path):
    spec = _spec(layers=(SMALL[0],), patterns=("2:4",), perms=("identity",), passes=("fwd",))
    cache = ResultCache(tmp_path / "cache.jsonl", fingerprint("cpu"))
    problem = sweep_mod.gemm_tasks(spec)[0][0]
    tune(problem, get_backend("torch_dense"), cache, TuneSettings(budget_s=0.01))
    plan = make_plan(spec, cache)
    by_backend = {t.task[1]: t for t in plan.tasks if t.kind == "gemm"}
    assert by_backend["torch_dense"].cached and by_backend["torch_dense"].estimate_s == 0
    assert not by_backend["torch_tiled"].cached and by_backend["torch_tiled"].estimate_s > 0
    # the measured rows calibrate the model: torch_dense's throughput comes from the cache
    assert "torch_dense" in plan.model.calibration.flops_per_s
    tight = {t.task[1]: t for t in make_plan(spec, cache, budget_s=1e-3).tasks if t.kind == "gemm"}
    assert not tight["torch_dense"].skip_reason  # measured rows still come, at no cost
    assert tight["torch_tiled"].skip_reason.startswith("time budget: estimated")


def test_b_a_partly_cached_search_costs_only_its_missing_configs(tmp_path):
    spec = _spec(layers=(SMALL[0],), patterns=("2:4",), perms=("identity",), passes=("fwd",))
    spec = SweepSpec(**{**spec.__dict__, "backends": ("torch_tiled",)})
    cache = ResultCache(tmp_path / "cache.jsonl", fingerprint("cpu"))
    problem = sweep_mod.gemm_tasks(spec)[0][0]
    tune(problem, get_backend("torch_tiled"), cache, TuneSettings("annealing", 3, budget_s=0.01))
    five = SweepSpec(**{**spec.__dict__, "settings": TuneSettings("annealing", 5, budget_s=0.01)})
    (task,) = [t for t in make_plan(five, cache).tasks if t.kind == "gemm"]
    assert task.configs == 2  # the same seeded search replays its 3 cached configs for free


def test_c_the_wall_clock_recheck_skips_what_no_longer_fits(simulated):
    clock, state = simulated
    spec = _spec(layers=(HEADLINE,), patterns=("2:4",), perms=("greedy",))
    plan = make_plan(spec, None, budget_s=make_plan(spec, None).estimate_s * 1.001, clock=clock)
    assert not plan.skipped  # planned to fit ...
    state.update(plan=plan, factor=3.0)  # ... but every task takes three times its estimate
    run_sweep(plan.spec, None, progress=False, plan=plan)
    late = plan.skipped
    assert late and all(t.skip_reason.endswith("(wall clock)") for t in late)
    assert len(state["ran"]) + len(late) == len(plan.tasks)
    assert clock.now <= plan.budget_s * 3  # it stopped instead of running on


def test_eta_bar_counts_estimated_seconds(capsys, simulated):
    clock, state = simulated
    plan = make_plan(_spec(layers=(SMALL[0],), patterns=("2:4",)), None, clock=clock)
    state["plan"] = plan
    run_sweep(plan.spec, None, progress=True, plan=plan)
    err = capsys.readouterr().err
    assert f"/{plan.estimate_s:.0f} est. s" in err and "<" in err


def test_d_plan_for_the_gpu_tier_prints_an_estimate_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["bench", "--tier", "gpu", "--plan", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "estimated total" in text and "budget 1,080 s" in text and "on cuda" in text
    assert "headline shapes, 2:4" in text and not out.exists()
    assert main(["bench", "--tier", "gpu", "--plan", "--full", "--out", str(out)]) == 0
    full = capsys.readouterr().out
    assert "budget none" in full and "0 skipped" in full and not out.exists()


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan", "inf"])
def test_e_a_budget_that_is_not_positive_is_an_error(tmp_path, capsys, value):
    out = tmp_path / "run"
    assert main(["bench", "--tier", "cpu", "--quick", "--time-budget", value, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --time-budget must be a positive")
    assert not out.exists()


def test_full_and_a_budget_contradict(tmp_path, capsys):
    args = ["bench", "--tier", "cpu", "--full", "--time-budget", "60", "--out", str(tmp_path)]
    assert main(args) == 2 and "drop --time-budget" in capsys.readouterr().err


def test_tier_defaults_bound_only_the_gpu_tier():
    class Args:
        time_budget, full, quick = None, False, False

    assert bench_budget(Args, "gpu") == 1080.0 and bench_budget(Args, "cpu") is None
    Args.full = True
    assert bench_budget(Args, "gpu") is None


def test_rank_puts_headline_shapes_patterns_and_passes_first():
    fwd = GemmProblem("nm_gemm", "fwd", 4096, 13008, 1024, "bfloat16", "2:4", layer="vit_l.fc1")
    bwd = GemmProblem("nm_gemm", "bwd-data", 1024, 13008, 4096, "bfloat16", "2:4", "greedy")
    other = GemmProblem("nm_gemm", "fwd", 256, 64, 512, "bfloat16", "2:4")
    assert rank("gemm", (fwd, "cublas")) == rank("gemm", (bwd, "cublas")) == 0
    assert rank("gemm", (other, "cublas")) == 1
    assert rank("gemm", (GemmProblem(**{**fwd.__dict__, "pattern": "1:4"}), "cublas")) == 2


def test_cost_model_uses_calibration_and_min_reps():
    p = GemmProblem("nm_gemm", "fwd", 1024, 1024, 1024, "float32", "2:4")
    slow = CostModel("cpu", 0.01, 5, Calibration({"x": 1e9}, {"x": 3}))
    assert slow.kernel_s(p, "x") == pytest.approx(p.flops / 1e9)
    assert slow.config_s(p, "x") >= 5 * slow.kernel_s(p, "x")  # min_reps beats the budget
    gpu = CostModel("cuda", 1.0)
    assert gpu.kernel_s(p, "cusparselt") < gpu.kernel_s(p, "bimask_dense")


def test_make_bench_full_passes_full_through():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = ["make", "-n", "-C", str(root), "bench", f"PY={sys.executable}", "TIER=gpu"]
    full = subprocess.run([*cmd, "FULL=1"], capture_output=True, text=True, timeout=60).stdout
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    plain, full = ([x for x in out.splitlines() if "-m suite bench" in x] for out in (plain, full))
    assert len(plain) == 1 and "--tier auto" in plain[0] and "--full" not in plain[0]
    assert len(full) == 1 and "--tier auto" in full[0] and " --full" in full[0]
