"""The permutation-strategy interface and the scoring helpers strategies share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from bimask.patterns import NMPattern


@dataclass(frozen=True)
class PermutationProblem:
    """What a strategy sees: the forward mask as float rows, the pattern and a seeded generator."""

    rows: torch.Tensor  # (out, K) float32, 1.0 where the forward mask keeps a weight
    pattern: NMPattern
    generator: torch.Generator

    @property
    def n_groups(self) -> int:
        return self.rows.shape[0] // self.pattern.m


class PermutationStrategy(Protocol):
    """A strategy maps a problem (and its options) to a row permutation (LongTensor)."""

    def __call__(self, problem: PermutationProblem, **options) -> torch.Tensor: ...


def group_scores(rows: torch.Tensor, perm: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
    """Score of every backward group under ``perm``: sum_k min(N, kept count)."""
    out, k = rows.shape
    counts = rows[perm].reshape(out // pattern.m, pattern.m, k).sum(1)
    return counts.clamp(max=pattern.n).sum(-1)


def total_score(rows: torch.Tensor, perm: torch.Tensor, pattern: NMPattern) -> int:
    return int(group_scores(rows, perm, pattern).sum())
