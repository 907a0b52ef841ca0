"""The tuner: verify each config against the reference, then time it; failures become rows."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from suite.backends.base import Backend, BackendFailure
from suite.cache import ResultCache
from suite.device import capture, throttled
from suite.problem import DTYPES, TOLERANCE, GemmInputs, GemmProblem, make_inputs, reference
from suite.problem import relative_error as rel_err
from suite.space import Config
from suite.strategies import Objective, run_strategy
from suite.timing import measure

STATUSES = ("ok", "unsupported", "compile", "launch", "resources", "wrong_answer", "timeout")


@dataclass(frozen=True)
class TuneSettings:
    strategy: str = "brute_force"
    max_evals: int | None = None
    max_seconds: float | None = None
    seed: int = 0
    target_rse: float = 0.01
    budget_s: float = 1.0  # timing budget per config
    min_reps: int = 5
    timeout_s: float = 30.0  # a config whose checked run takes longer is recorded as a timeout


def base_row(problem: GemmProblem, backend: Backend, config: Config | None, device: str) -> dict:
    return {
        **problem.key(),
        "backend": backend.name,
        "backend_kind": backend.kind,
        "config": config.to_json() if config is not None else "{}",
        "status": "ok",
        "reason": "",
        "median_ms": math.nan,
        "iqr_ms": math.nan,
        "min_ms": math.nan,
        "reps": 0,
        "converged": False,
        "tflops": math.nan,
        "rel_error": math.nan,
        "sparse_path": backend.kind == "sparse",
        # what A was: the unmasked weight (a dense layer) or the masked one
        "operand": "unmasked" if backend.dense_operand and problem.pattern != "dense" else "masked",
        "throttled": False,
        "device": device,
    }


def _failed(row: dict, status: str, reason: str) -> dict:
    row.update(status=status, reason=reason[:300])
    return row


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def evaluate(
    problem: GemmProblem,
    backend: Backend,
    config: Config,
    inputs: GemmInputs,
    ref: torch.Tensor,
    settings: TuneSettings,
    device: str,
) -> dict:
    """Prepare, check on a poisoned output, then time one config. Never raises."""
    row = base_row(problem, backend, config, device)
    try:
        prepared = backend.prepare(problem, inputs, config)
    except BackendFailure as f:
        return _failed(row, f.status, f.reason)
    except torch.cuda.OutOfMemoryError as err:
        return _failed(row, "resources", str(err))
    except Exception as err:  # a kernel that does not build is a compile failure
        return _failed(row, "compile", f"{type(err).__name__}: {err}")
    out = torch.full((problem.m, problem.n), math.nan, dtype=DTYPES[problem.dtype], device=device)
    t0 = time.perf_counter()
    try:
        prepared.run_into(out)
        _sync(device)
    except torch.cuda.OutOfMemoryError as err:
        return _failed(row, "resources", str(err))
    except Exception as err:
        return _failed(row, "launch", f"{type(err).__name__}: {err}")
    if time.perf_counter() - t0 > settings.timeout_s:
        return _failed(row, "timeout", f"checked run took more than {settings.timeout_s} s")
    err = rel_err(out, ref)
    row.update(rel_error=err, sparse_path=prepared.sparse_path)
    if not err <= TOLERANCE[problem.dtype]:
        return _failed(
            row,
            "wrong_answer",
            f"relative error {err:.3g} > {TOLERANCE[problem.dtype]} for {problem.dtype}",
        )
    before = capture(device)
    timing = measure(
        prepared.run,
        device=device,
        target_rse=settings.target_rse,
        budget_s=settings.budget_s,
        min_reps=settings.min_reps,
    )
    after = capture(device)
    row.update(
        median_ms=timing.median_ms,
        iqr_ms=timing.iqr_ms,
        min_ms=timing.min_ms,
        reps=timing.reps,
        converged=timing.converged,
        tflops=problem.flops / (timing.median_ms * 1e-3) / 1e12,
        throttled=throttled(before, after),
    )
    return row


def mark_best(rows: list[dict]) -> None:
    """Flag the fastest ok row, and every row within the noise of it as a tie."""
    ok = [r for r in rows if r["status"] == "ok"]
    for r in rows:
        r["is_best"] = r["tie_with_best"] = False
    if not ok:
        return
    best = min(ok, key=lambda r: r["median_ms"])
    best["is_best"] = True
    for r in ok:
        if (
            r is not best
            and r["median_ms"] - best["median_ms"] <= (best["iqr_ms"] + r["iqr_ms"]) / 2
        ):
            r["tie_with_best"] = True


_LAST_INPUTS: dict = {}


def inputs_and_reference(problem: GemmProblem, device: str, dense: bool = False):
    """The problem's inputs and float64 reference, kept for the last problem only: a sweep
    tunes every backend of a problem in a row, and at 8192^3 the reference takes seconds.
    ``dense``: the dense layer's inputs (unmasked A) and their reference instead."""
    key = (problem, str(device))
    if _LAST_INPUTS.get("key") != key:
        _LAST_INPUTS.clear()  # drop the previous problem's tensors before making new ones
        inputs = make_inputs(problem, device)
        _LAST_INPUTS.update(key=key, masked=(inputs, reference(inputs)))
    if not dense:
        return _LAST_INPUTS["masked"]
    if "dense" not in _LAST_INPUTS:
        view = _LAST_INPUTS["masked"][0].dense_view()
        _LAST_INPUTS["dense"] = (view, reference(view))
    return _LAST_INPUTS["dense"]


def cache_base_key(problem: GemmProblem, backend: Backend, version: str | None = None) -> dict:
    """The cache key of ``problem`` on ``backend`` without the config (tune adds it)."""
    version = backend.version() if version is None else version
    key = {**problem.key(), "backend": backend.name, "backend_version": version}
    if backend.dense_operand:
        key["operand"] = "unmasked"  # not the rows of older runs, timed on the masked A
    return key


def unsupported_reason(problem: GemmProblem, backend: Backend) -> str | None:
    """Why ``backend`` cannot run ``problem`` at all (tune records one row and measures nothing)."""
    return backend.supports(problem) or (
        None if problem.dtype in backend.dtypes else f"{backend.name} does not run {problem.dtype}"
    )


def tune(
    problem: GemmProblem,
    backend: Backend,
    cache: ResultCache | None = None,
    settings: TuneSettings = TuneSettings(),
    device: str = "cpu",
    warm: Sequence = (),
) -> list[dict]:
    """Search the backend's space for ``problem``; returns one row per evaluated config.

    ``warm``: :class:`suite.warm.WarmConfig` s (the best configs of related problems) evaluated
    first, inside the budget; their rows say ``warm_start`` True and ``warm_from`` where the
    config came from. Every row records the backend's ``kernel_source``."""
    source = backend.kernel_source()
    why = unsupported_reason(problem, backend)
    if why:
        row = _failed(base_row(problem, backend, None, device), "unsupported", why)
        row.update(kernel_source=source, warm_start=False, warm_from="")
        mark_best([row])
        return [row]
    inputs: GemmInputs | None = None
    ref = None
    base_key = cache_base_key(problem, backend)
    rows: list[dict] = []
    warm_from = {w.config: w.source for w in reversed(warm)}  # the first mention names it

    def cost(config: Config) -> float:
        nonlocal inputs, ref
        key = {**base_key, "config": config.to_dict()}
        row = cache.get(key) if cache is not None else None
        if row is None:
            if inputs is None:  # built lazily: a fully cached problem costs nothing
                inputs, ref = inputs_and_reference(problem, device, backend.dense_operand)
            row = evaluate(problem, backend, config, inputs, ref, settings, device)
            row["kernel_source"] = source
            if cache is not None:
                cache.put(key, row)
        # a cached row of an older run has no source; its key holds this backend's version
        row = {"kernel_source": source, **row}
        row.update(warm_start=config in warm_from, warm_from=warm_from.get(config, ""))
        rows.append(row)
        return row["median_ms"] if row["status"] == "ok" else math.inf

    objective = Objective(cost, settings.max_evals, settings.max_seconds)
    run_strategy(
        settings.strategy,
        backend.space(problem),
        objective,
        settings.seed,
        [w.config for w in warm],
    )
    mark_best(rows)
    return rows
