"""Greedy grouping: grow all backward groups at once, each taking the row that fits it best.

A row "fits" a group at column k when the group still holds fewer than N forward-kept weights
there, so the gain of adding row r to group g is rows[r] . (count_g < N). Every round adds one
row to every group; rows wanted by several groups go to the highest gain (ties broken by a small
seeded jitter, which also spreads equal-gain choices), losers pick again among free rows.
"""

import torch

from bimask.permutations.base import PermutationProblem


def _assign_round(gain: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """Give each group (column of ``gain``) a distinct free row; returns the row per group."""
    out, groups = gain.shape
    gain = gain.masked_fill(taken[:, None], -1.0)
    chosen = torch.full((groups,), -1, dtype=torch.long)
    waiting = torch.arange(groups)
    while waiting.numel():
        best = gain[:, waiting].max(dim=0)
        rows, vals = best.indices, best.values
        top = torch.full((out,), -2.0).scatter_reduce(0, rows, vals, reduce="amax")
        first = torch.full((out,), groups, dtype=torch.long)
        contenders = vals >= top[rows]
        first.scatter_reduce_(0, rows[contenders], waiting[contenders], reduce="amin")
        won = contenders & (first[rows] == waiting)
        chosen[waiting[won]] = rows[won]
        gain[rows[won]] = -1.0
        waiting = waiting[~won]
    return chosen


def greedy(problem: PermutationProblem) -> torch.Tensor:
    rows, n, m = problem.rows, problem.pattern.n, problem.pattern.m
    out = rows.shape[0]
    groups = problem.n_groups
    order = torch.randperm(out, generator=problem.generator)
    members = torch.empty((groups, m), dtype=torch.long)
    members[:, 0] = order[:groups]
    taken = torch.zeros(out, dtype=torch.bool)
    taken[members[:, 0]] = True
    counts = rows[members[:, 0]].clone()
    for slot in range(1, m):
        gain = rows @ (counts < n).float().t()
        gain += torch.rand(gain.shape, generator=problem.generator) * 0.5  # < 1: keeps the order
        picked = _assign_round(gain, taken)
        members[:, slot] = picked
        taken[picked] = True
        counts += rows[picked]
    return members.reshape(-1)
