"""Permutation strategies for the Bi-Mask backward groups, as a registry.

Each strategy returns a row permutation pi; backward N:M groups are M consecutive rows of W[pi].
Add a strategy by writing one function ``(PermutationProblem, **options) -> LongTensor`` and one
line in ``PERMUTATIONS``.
"""

from __future__ import annotations

import torch

from bimask.backward_mask import check_perm
from bimask.masks import check_groupable
from bimask.patterns import NMPattern
from bimask.permutations.base import PermutationProblem, PermutationStrategy
from bimask.permutations.greedy import greedy
from bimask.permutations.identity import identity
from bimask.permutations.local_search import local_search
from bimask.permutations.random_search import random_search

PERMUTATIONS: dict[str, PermutationStrategy] = {
    "identity": identity,
    "random": random_search,
    "greedy": greedy,
    "local_search": local_search,
}


def find_permutation(
    weight2d: torch.Tensor,
    forward_mask2d: torch.Tensor,
    pattern: str | NMPattern,
    strategy: str = "random",
    seed: int = 0,
    **options,
) -> torch.Tensor:
    """Search a row permutation that keeps many forward-kept weights in the backward mask.

    ``weight2d`` is accepted for strategies that look at magnitudes; the registered ones score
    the forward mask only (the paper's criterion). Returns a LongTensor on the weight's device.
    """
    pattern = NMPattern.parse(pattern)
    if strategy not in PERMUTATIONS:
        raise ValueError(
            f"unknown permutation strategy {strategy!r}; choose one of {sorted(PERMUTATIONS)}"
        )
    if forward_mask2d.dim() != 2 or forward_mask2d.shape != weight2d.shape:
        raise ValueError(
            f"forward mask {tuple(forward_mask2d.shape)} must be 2-D and match the weight "
            f"{tuple(weight2d.shape)}"
        )
    check_groupable(forward_mask2d.shape[0], pattern, "output dimension (Bi-Mask backward groups)")
    problem = PermutationProblem(
        rows=forward_mask2d.detach().to("cpu", torch.float32),
        pattern=pattern,
        generator=torch.Generator().manual_seed(int(seed)),
    )
    try:
        perm = PERMUTATIONS[strategy](problem, **options)
    except TypeError as err:
        raise ValueError(
            f"bad options {options} for permutation strategy {strategy!r}: {err}"
        ) from None
    check_perm(perm, forward_mask2d.shape[0])
    return perm.to(weight2d.device)


__all__ = ["PERMUTATIONS", "PermutationProblem", "PermutationStrategy", "find_permutation"]
