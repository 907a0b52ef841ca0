"""Local search: start from the greedy grouping, then swap rows between pairs of groups.

Each round pairs the groups at random and, for every pair, evaluates all M x M single-row swaps
at once, applying the best one when it raises the pair's score. Stops after ``rounds`` rounds
or when a round improves nothing.
"""

import torch

from bimask.permutations.base import PermutationProblem
from bimask.permutations.greedy import greedy


def _best_swaps(rows: torch.Tensor, members: torch.Tensor, a, b, n: int):
    ra, rb = rows[members[a]], rows[members[b]]  # (pairs, m, K)
    ca, cb = ra.sum(1), rb.sum(1)
    base = ca.clamp(max=n).sum(-1) + cb.clamp(max=n).sum(-1)
    new_a = ca[:, None, None] - ra[:, :, None] + rb[:, None, :]  # swap a's x with b's y
    new_b = cb[:, None, None] - rb[:, None, :] + ra[:, :, None]
    gain = new_a.clamp(max=n).sum(-1) + new_b.clamp(max=n).sum(-1) - base[:, None, None]
    best = gain.reshape(len(a), -1).max(dim=1)
    return best.values, best.indices


def local_search(problem: PermutationProblem, rounds: int = 30) -> torch.Tensor:
    n, m = problem.pattern.n, problem.pattern.m
    members = greedy(problem).reshape(-1, m).clone()
    groups = members.shape[0]
    if groups < 2:
        return members.reshape(-1)
    for _ in range(rounds):
        order = torch.randperm(groups, generator=problem.generator)
        half = groups // 2
        a, b = order[:half], order[half : 2 * half]
        gain, flat = _best_swaps(problem.rows, members, a, b, n)
        do = gain > 0
        if not do.any():
            break
        a, b, x, y = a[do], b[do], flat[do] // m, flat[do] % m
        row_a = members[a, x].clone()
        members[a, x] = members[b, y]
        members[b, y] = row_a
    return members.reshape(-1)
