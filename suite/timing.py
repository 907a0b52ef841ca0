"""The one timing function of the project.

GPU: CUDA events around each call, an L2 flush (a write of a buffer larger than L2) before each
repetition, warm-up first. CPU: ``time.perf_counter``. Repetitions continue until the relative
standard error of the mean is below ``target_rse`` (after ``min_reps``) or the time budget is
spent. Median, IQR, min and the raw samples are kept.

The spread a result row carries on is :func:`spread_bounds`: median +- IQR/2 (the width of the
middle half of the samples, centred on the median), never below the fastest sample. Reports
derive every ratio's interval from it (suite/ratios.py).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

_L2_FLUSH_BYTES = 256 * 1024 * 1024
_flush_buffers: dict[str, torch.Tensor] = {}


@dataclass(frozen=True)
class Timing:
    """Result of :func:`measure`; times in milliseconds."""

    median_ms: float
    iqr_ms: float
    min_ms: float
    mean_ms: float
    rse: float  # standard error of the mean / mean
    reps: int
    converged: bool  # reached target_rse before the budget ran out
    samples_ms: tuple[float, ...] = field(repr=False)

    @property
    def bounds(self) -> tuple[float, float]:
        """The noise interval of this timing, :func:`spread_bounds` of its median, IQR and min."""
        return spread_bounds(self.median_ms, self.iqr_ms, self.min_ms)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samples_ms"] = list(self.samples_ms)
        return d


def spread_bounds(median_ms, iqr_ms, min_ms=math.nan):
    """(low, high) = median -+ IQR/2, the low end never below the fastest sample ``min_ms``
    (nor below zero). Works on floats and on numpy arrays or pandas Series alike; a missing IQR
    gives NaN bounds (the spread is unknown)."""
    median, iqr, fastest = (np.asarray(x, dtype=float) for x in (median_ms, iqr_ms, min_ms))
    low = np.fmax(median - iqr / 2, np.where(np.isnan(iqr), np.nan, np.fmax(fastest, 0.0)))
    high = median + iqr / 2
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(samples: list[float], target_rse: float = 0.01) -> Timing:
    mean = statistics.fmean(samples)
    sd = statistics.stdev(samples) if len(samples) > 1 else float("inf")
    rse = sd / math.sqrt(len(samples)) / mean if mean > 0 else float("inf")
    return Timing(
        median_ms=statistics.median(samples),
        iqr_ms=_quantile(samples, 0.75) - _quantile(samples, 0.25),
        min_ms=min(samples),
        mean_ms=mean,
        rse=rse,
        reps=len(samples),
        converged=rse <= target_rse,
        samples_ms=tuple(samples),
    )


def _flush_l2(device: torch.device) -> None:
    key = str(device)
    if key not in _flush_buffers:
        _flush_buffers[key] = torch.empty(_L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    _flush_buffers[key].zero_()


def _time_cuda(fn: Callable[[], object], device: torch.device, flush_l2: bool) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    if flush_l2:
        _flush_l2(device)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _time_cpu(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def measure(
    fn: Callable[[], object],
    *,
    device: str | torch.device = "cpu",
    target_rse: float = 0.01,
    budget_s: float = 2.0,
    min_reps: int = 5,
    max_reps: int = 10_000,
    warmup: int = 1,
    flush_l2: bool = True,
) -> Timing:
    """Time ``fn()`` until its relative standard error is below ``target_rse`` or time runs out."""
    device = torch.device(device)
    if min_reps < 2:
        raise ValueError("min_reps must be >= 2 to estimate the spread")
    on_gpu = device.type == "cuda"
    for _ in range(warmup):
        fn()
    if on_gpu:
        torch.cuda.synchronize(device)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_reps:
        samples.append(_time_cuda(fn, device, flush_l2) if on_gpu else _time_cpu(fn))
        enough = len(samples) >= min_reps
        if enough and (summarize(samples, target_rse).converged or time.perf_counter() > deadline):
            break
    return summarize(samples, target_rse)
