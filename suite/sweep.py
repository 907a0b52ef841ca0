"""Sweeps: shapes x patterns x passes x permutation strategies x backends, plus mask costs.

Every measurement goes through the cache, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

import pandas as pd
import torch
from tqdm import tqdm

from bimask import bimask_backward_mask, find_permutation, nm_mask, permutation_score
from suite.backends import BACKENDS
from suite.cache import ResultCache
from suite.compressors import compressors_for
from suite.problem import PASSES, GemmProblem, Layer, problems_for_layer
from suite.store import add_speedups
from suite.sweep_order import order_tasks
from suite.timing import measure
from suite.tuner import TuneSettings, mark_best, tune
from suite.warm import WarmPool, warm_for


@dataclass(frozen=True)
class SweepSpec:
    layers: tuple[Layer, ...]
    patterns: tuple[str, ...]
    perms: tuple[str, ...]
    backends: tuple[str, ...]
    dtype: str
    device: str
    settings: TuneSettings = field(default_factory=TuneSettings)
    perm_every: int = 100  # permutation search cost is amortised over this many steps
    passes: tuple[str, ...] = PASSES  # which training GEMMs to sweep
    space: str = "full"  # "quick": each backend's quick_space where it has one
    warm_start: bool = True  # budgeted searches start from related problems' best (suite/warm.py)
    warm_rows: tuple = field(default=(), compare=False)  # --warm-from: another run's rows
    warm_origin: str = ""  # where warm_rows came from (the report names it)

    def warm_pool(self) -> WarmPool:
        """A pool holding the --warm-from rows (this run's are added as problems are tuned)."""
        pool = WarmPool()
        pool.add(list(self.warm_rows), self.warm_origin)
        return pool


def gemm_tasks(spec: SweepSpec) -> list[tuple[GemmProblem, str]]:
    seen, tasks = set(), []
    for layer in spec.layers:
        for pattern in spec.patterns:
            for problem in problems_for_layer(layer, pattern, spec.dtype, spec.perms):
                if problem.pass_ not in spec.passes:
                    continue
                for backend in spec.backends:
                    if (problem, backend) not in seen:
                        seen.add((problem, backend))
                        tasks.append((problem, backend))
    return order_tasks(tasks)


def mask_tasks(spec: SweepSpec) -> list[tuple[Layer, str, str]]:
    return [
        (layer, pattern, perm)
        for layer in dict.fromkeys(Layer(lay.name, lay.out, lay.inp, 0) for lay in spec.layers)
        for pattern in spec.patterns
        for perm in spec.perms
    ]


class _NoTiming:
    median_ms = iqr_ms = min_ms = float("nan")
    reps = 0
    converged = False


_NO_TIMING = _NoTiming()


def _overhead_row(
    op: str, layer: Layer, pattern: str, perm: str, device: str, timing, **extra
) -> dict:
    return {
        "op": op,
        "layer": layer.name,
        "backend": "bimask",
        "backend_kind": "mask",
        "pass": "mask",
        "pattern": pattern,
        "perm": perm,
        "m": layer.out,
        "n": 0,
        "k": layer.inp,
        "dtype": "float32",
        "config": "{}",
        "status": "ok",
        "reason": "",
        "median_ms": timing.median_ms,
        "iqr_ms": timing.iqr_ms,
        "min_ms": timing.min_ms,
        "reps": timing.reps,
        "converged": timing.converged,
        "tflops": float("nan"),
        "rel_error": float("nan"),
        "device": device,
        **extra,
    }


def mask_rows(layer: Layer, pattern: str, perm: str, spec: SweepSpec) -> list[dict]:
    """Mask quality and cost on a random Gaussian weight of the layer's shape."""
    device, budget = spec.device, spec.settings.budget_s
    g = torch.Generator().manual_seed(0)
    w = torch.randn(layer.out, layer.inp, generator=g).to(device)
    mf = nm_mask(w, pattern)
    t_search = measure(
        lambda: find_permutation(w, mf, pattern, perm),
        device=device,
        budget_s=budget,
        min_reps=3,
        target_rse=0.05,
    )
    pi = find_permutation(w, mf, pattern, perm)
    mb = bimask_backward_mask(w, mf, pattern, pi)
    dy = torch.randn(64, layer.out, generator=g).to(device)
    exact = dy @ (w * mf)
    gap = float((dy @ (w * mb) - exact).norm() / exact.norm())
    kept = permutation_score(mf, pattern, pi) / int(mf.sum())
    rows = [
        _overhead_row(
            "perm_search", layer, pattern, perm, device, t_search, kept_frac=kept, grad_gap=gap
        )
    ]
    if perm == spec.perms[0]:  # per-step mask costs do not depend on the strategy
        t_f = measure(lambda: nm_mask(w, pattern), device=device, budget_s=budget, min_reps=3)
        t_b = measure(
            lambda: bimask_backward_mask(w, mf, pattern, pi),
            device=device,
            budget_s=budget,
            min_reps=3,
        )
        rows += [
            _overhead_row("nm_mask", layer, pattern, "-", device, t_f),
            _overhead_row("backward_mask", layer, pattern, "-", device, t_b),
        ]
        rows += compress_rows(layer, pattern, w, mf, (w * mb).t()[:, pi], spec)
    return rows


def compress_rows(layer, pattern, w, mf, a_bwd, spec: SweepSpec) -> list[dict]:
    """Per-step compression of both sparse operands by every compressor the sweep's backends
    need (W*Mf for fwd, (W*Mb)^T in pi order for bwd-data, and mask + pack in one pass from W
    where the compressor fuses them); failures are rows too."""
    rows, a_fwd = [], w * mf
    for c in compressors_for(spec.backends, spec.device):
        why = c.available() or c.supports(pattern)
        jobs = [
            ("compress", layer, a_fwd),
            ("compress_bwd", Layer(layer.name, layer.inp, layer.out, 0), a_bwd),
        ]
        if c.fused is not None:
            jobs.append(("mask_compress", layer, w))
        for op, lay, a in jobs:
            if why:
                rows.append(_failed_row(op, lay, pattern, spec.device, "unsupported", why, c.name))
                continue
            try:
                a_dev = a.to(spec.device).contiguous()
                call = (c.fused if op == "mask_compress" else c.prepare)(a_dev, pattern)
                t = measure(call, device=spec.device, budget_s=spec.settings.budget_s, min_reps=3)
            except Exception as err:  # a failed measurement is a data row, not a crash
                rows.append(
                    _failed_row(op, lay, pattern, spec.device, "error", repr(err)[:300], c.name)
                )
                continue
            rows.append(
                _overhead_row(
                    op, lay, pattern, "-", spec.device, t, compress_backend=c.name, dtype=c.dtype
                )
            )
    return rows


def _failed_row(op, layer, pattern, device, status, reason, backend) -> dict:
    nan = float("nan")
    row = _overhead_row(op, layer, pattern, "-", device, _NO_TIMING, compress_backend=backend)
    return {**row, "status": status, "reason": reason, "median_ms": nan}


def mask_key(layer: Layer, pattern: str, perm: str, spec: SweepSpec) -> dict:
    """The cache key of one mask task's rows."""
    return {
        "op": "mask_rows",
        "layer": layer.name,
        "out": layer.out,
        "in": layer.inp,
        "pattern": pattern,
        "perm": perm,
        "backends": sorted(spec.backends),
    }


def _cached_mask_rows(cache, layer, pattern, perm, spec) -> list[dict]:
    key = mask_key(layer, pattern, perm, spec)
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return hit["rows"]
    rows = mask_rows(layer, pattern, perm, spec)
    if cache is not None:
        cache.put(key, {"rows": rows})
    return rows


def _backend(name: str, spec: SweepSpec):
    backend = BACKENDS[name]
    if spec.space == "quick" and backend.quick_space is not None:
        return replace(backend, space=backend.quick_space)
    return backend


def sweep_work(spec: SweepSpec, shard: tuple[int, int] = (0, 1)) -> list[tuple[str, tuple]]:
    """This shard's tasks in sweep order: ("gemm", (problem, backend)) and ("mask", ...)."""
    index, count = shard
    work = [("gemm", t) for t in gemm_tasks(spec)] + [("mask", t) for t in mask_tasks(spec)]
    return work[index::count]


def run_sweep(
    spec: SweepSpec,
    cache: ResultCache | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    plan=None,
) -> pd.DataFrame:
    """Run (this shard of) the sweep; returns one row per measurement, failures included.

    ``plan`` (a :class:`suite.plan.Plan` of this spec and shard): run its tasks in its order,
    skip what it skips or what no longer fits the wall clock, show its ETA."""
    if plan is not None:
        bar = plan.progress_bar(disable=not progress)
        steps = plan.run(bar)
    else:
        work = sweep_work(spec, shard)
        bar = tqdm(work, desc="sweep", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        steps = bar
    rows: list[dict] = []
    pool = spec.warm_pool()
    for kind, task in steps:
        if kind == "gemm":
            problem, name = task
            bar.set_postfix_str(f"{problem.layer} {problem.pass_} {problem.pattern} {name}")
            backend = _backend(name, spec)
            warm = warm_for(pool, problem, backend, spec.settings, spec.warm_start)
            tuned = tune(problem, backend, cache, spec.settings, spec.device, warm)
            pool.add(tuned)
            rows += tuned
        else:
            layer, pattern, perm = task
            bar.set_postfix_str(f"{layer.name} masks {pattern} {perm}")
            rows += _cached_mask_rows(cache, layer, pattern, perm, spec)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["baseline"] = df.backend.map(
        lambda b: bool(BACKENDS[b].baseline) if b in BACKENDS else False
    )
    return add_speedups(df)


def best_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The best config of every (problem, backend), re-marked after merging shards."""
    gemm = df[df.op.isin(["nm_gemm", "gemm"])]
    groups = []
    for _, g in gemm.groupby(
        ["layer", "pass", "pattern", "perm", "m", "n", "k", "dtype", "backend", "device"],
        dropna=False,
    ):
        recs = g.to_dict("records")
        mark_best(recs)
        groups += [r for r in recs if r["is_best"]]
    return pd.DataFrame(groups)
