"""The paper's search: draw K random permutations, keep the best (first best wins)."""

import torch

from bimask.permutations.base import PermutationProblem, total_score


def random_search(problem: PermutationProblem, candidates: int = 100) -> torch.Tensor:
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    out = problem.rows.shape[0]
    best_perm, best = torch.arange(out), -1
    for _ in range(candidates):
        perm = torch.randperm(out, generator=problem.generator)
        score = total_score(problem.rows, perm, problem.pattern)
        if score > best:
            best_perm, best = perm, score
    return best_perm
