"""``--profile-steps N``: the per-step time breakdown of training (bimask.profile) over the first
N steps of each epoch, as in ``python -m suite step``.

Each profiled step runs inside one ``section("other")``: its self time is everything the named
sections (masks, permutation, compress, gather, gemm_fwd, gemm_dx, gemm_dw, optimizer, ...) do
not cover (activations, the loss, autograd, launches), so the parts add up to the step. On CUDA
the sections are events, read once at the end of the epoch (no host sync per step).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import torch

from bimask.profile import SECTIONS, profiling, section

ORDER = (*SECTIONS, "optimizer", "other")


class StepProfiler:
    """Profiles the first ``steps`` steps of an epoch; :meth:`summary` gives their mean."""

    def __init__(self, steps: int, device: torch.device | str) -> None:
        self.steps, self.device = steps, device
        self._profiles: list = []

    @contextlib.contextmanager
    def step(self, index: int) -> Iterator[None]:
        """Profile this step when ``index`` (its position in the epoch) is among the first N."""
        if index >= self.steps:
            yield
            return
        with profiling(self.device) as prof, section("other"):
            yield
        self._profiles.append(prof)

    def summary(self) -> tuple[dict[str, float], int] | None:
        """({section: mean ms per profiled step, ..., "step": their sum}, steps profiled), or
        None if none was; resets for the next epoch."""
        if not self._profiles:
            return None
        totals: dict[str, float] = defaultdict(float)
        for prof in self._profiles:
            for name, ms in prof.totals_ms().items():
                totals[name] += ms
        n = len(self._profiles)
        self._profiles = []
        names = [s for s in ORDER if s in totals] + sorted(set(totals) - set(ORDER))
        mean = {name: totals[name] / n for name in names}
        return {**mean, "step": sum(mean.values())}, n


def format_summary(epoch: int, mean: dict[str, float], steps: int) -> str:
    """One line: 'step profile, epoch 1 (5 steps, ms per step): masks 1.2, ...; step 9.8'."""
    parts = ", ".join(f"{k} {v:.3g}" for k, v in mean.items() if k != "step")
    head = f"step profile, epoch {epoch} ({steps} steps, ms per step)"
    return f"{head}: {parts}; step {mean['step']:.3g}"
