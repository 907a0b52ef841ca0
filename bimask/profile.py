"""Per-step time breakdown of sparse training: named sections, off unless a profile is active.

Layers and backends mark what they do with ``section(name)``; nothing is timed (and nothing
waits for the GPU) unless a caller opened ``profiling()``. Section times are *self* times: a
section nested in another is subtracted from its parent, so the totals of one step add up to the
time spent inside sections, never twice.

On CUDA the sections are timed with events recorded on the current stream (no host sync while
the step runs); ``StepProfile.totals_ms()`` synchronises once, at the end. On the CPU they use
``time.perf_counter``.

Names used by this package (a backend may add its own):
  masks        forward/backward mask computation (``nm_mask``, the backward mask, tmask)
  permutation  the permutation search (every ``perm_every`` steps)
  compress     packing a masked weight for a sparse GEMM (values + metadata)
  gather       a separate permutation of an operand (e.g. dY's columns into pi order)
  gemm_fwd, gemm_dx, gemm_dw   the three GEMMs of a layer
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

SECTIONS = ("masks", "permutation", "compress", "gather", "gemm_fwd", "gemm_dx", "gemm_dw")


@dataclass
class _Open:
    name: str
    start: object  # a float (CPU) or a torch.cuda.Event
    children: list = field(default_factory=list)  # closed child intervals


@dataclass
class _Closed:
    name: str
    start: object
    end: object
    children: list


class StepProfile:
    """The sections recorded while it was active; read them with :meth:`totals_ms`."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.cuda = device.type == "cuda"
        self._stack: list[_Open] = []
        self._closed: list[_Closed] = []  # top-level intervals

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _elapsed_ms(self, start, end) -> float:
        if self.cuda:
            return float(start.elapsed_time(end))
        return (end - start) * 1e3

    def open(self, name: str) -> None:
        self._stack.append(_Open(name, self._mark()))

    def close(self) -> None:
        top = self._stack.pop()
        closed = _Closed(top.name, top.start, self._mark(), top.children)
        (self._stack[-1].children if self._stack else self._closed).append(closed)

    def totals_ms(self) -> dict[str, float]:
        """Self time per section name (ms), summed over every time it ran."""
        if self._stack:
            raise RuntimeError(f"section {self._stack[-1].name!r} is still open")
        if self.cuda:
            torch.cuda.synchronize()
        totals: dict[str, float] = defaultdict(float)

        def walk(interval: _Closed) -> float:
            whole = self._elapsed_ms(interval.start, interval.end)
            inner = sum(walk(child) for child in interval.children)
            totals[interval.name] += max(whole - inner, 0.0)
            return whole

        for interval in self._closed:
            walk(interval)
        return dict(totals)


_ACTIVE: list[StepProfile] = []


@contextmanager
def profiling(device: torch.device | str | None = None) -> Iterator[StepProfile]:
    """Record every ``section`` run inside the block into the returned profile."""
    profile = StepProfile(device)
    _ACTIVE.append(profile)
    try:
        yield profile
    finally:
        _ACTIVE.remove(profile)


def active() -> bool:
    return bool(_ACTIVE)


@contextmanager
def section(name: str) -> Iterator[None]:
    """Time the block as ``name`` in the active profile; a no-op when none is active."""
    if not _ACTIVE:
        yield
        return
    profile = _ACTIVE[-1]
    profile.open(name)
    try:
        yield
    finally:
        profile.close()
