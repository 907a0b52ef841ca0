"""The suite's own performance: the tuner's overhead per configuration (target < 5 ms).

A backend whose kernel does nothing isolates everything else the tuner does per config:
cache lookup, prepare, the poisoned-output check, the timing loop and bookkeeping.
"""

import time

import torch

from suite.backends import Backend, Prepared
from suite.problem import GemmProblem
from suite.space import SearchSpace
from suite.tuner import TuneSettings, tune


def _noop_prepare(problem, inputs, config):
    expected = inputs.a @ inputs.b.t()  # the check still compares against the float64 reference
    return Prepared(lambda: None, lambda out: out.copy_(expected), sparse_path=True)


NOOP = Backend(
    "noop",
    "cpu",
    "sparse",
    _noop_prepare,
    lambda p: SearchSpace({"x": tuple(range(40)), "y": (0, 1)}),
)


def test_tuner_overhead_per_config(benchmark):
    problem = GemmProblem("nm_gemm", "fwd", 128, 64, 256, "float32", "2:4")
    settings = TuneSettings(budget_s=0.0, min_reps=5)

    def run():
        t0 = time.perf_counter()
        rows = tune(problem, NOOP, None, settings)
        return (time.perf_counter() - t0) / len(rows), rows

    per_config, rows = benchmark.pedantic(run, rounds=3, iterations=1)
    assert all(r["status"] == "ok" for r in rows) and len(rows) == 80
    benchmark.extra_info.update(per_config_ms=per_config * 1e3, threads=torch.get_num_threads())
    print(f"\ntuner overhead: {per_config * 1e3:.2f} ms per config ({len(rows)} configs)")
    assert per_config < 5e-3, f"tuner overhead {per_config * 1e3:.2f} ms/config (target < 5 ms)"
