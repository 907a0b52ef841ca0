"""The identity: backward groups are M consecutive output channels."""

import torch

from bimask.permutations.base import PermutationProblem


def identity(problem: PermutationProblem) -> torch.Tensor:
    return torch.arange(problem.rows.shape[0])
