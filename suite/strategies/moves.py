"""Shared pieces of the stronger strategies: the space as an index matrix, spread-out starts,
snapping a wished-for point to the nearest valid unvisited config, and the budget they plan for.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from suite.space import Config, SearchSpace

_CACHE: OrderedDict[int, tuple[SearchSpace, Encoded]] = OrderedDict()


@dataclass(frozen=True)
class Encoded:
    """The valid configs of a space and, per config, the index of each tunable's value."""

    names: tuple[str, ...]
    sizes: np.ndarray  # values per tunable
    configs: list[Config]
    index: np.ndarray  # (configs, tunables) value indices
    row: dict[Config, int]

    def unseen(self, seen) -> np.ndarray:
        """Boolean mask of the configs not in ``seen``."""
        mask = np.ones(len(self.configs), dtype=bool)
        mask[[self.row[c] for c in seen if c in self.row]] = False
        return mask


def encoded(space: SearchSpace) -> Encoded:
    """The space's :class:`Encoded` form (kept for the last few spaces: searches repeat)."""
    key = id(space)
    if key in _CACHE and _CACHE[key][0] is space:
        _CACHE.move_to_end(key)
        return _CACHE[key][1]
    names = tuple(sorted(space.tunables))
    configs = space.configs()
    pos = {n: {v: i for i, v in enumerate(space.tunables[n])} for n in names}
    index = np.array([[pos[n][c[n]] for n in names] for c in configs], dtype=np.int32).reshape(
        len(configs), len(names)
    )
    sizes = np.array([len(space.tunables[n]) for n in names])
    enc = Encoded(names, sizes, configs, index, {c: i for i, c in enumerate(configs)})
    _CACHE[key] = (space, enc)
    while len(_CACHE) > 8:
        _CACHE.popitem(last=False)
    return enc


def budget_of(space_size: int, objective) -> int:
    """The evaluations a search may plan for: its budget, or the whole space when unbounded."""
    return min(objective.max_evals or space_size, space_size)


def nearest(enc: Encoded, target: np.ndarray, free: np.ndarray, rng) -> int | None:
    """Row of the free config closest to ``target`` (value indices): fewest differing tunables,
    then the smallest steps along the value lists; ties broken at random."""
    if not free.any():
        return None
    diff = np.abs(enc.index - target)
    scale = np.maximum(enc.sizes - 1, 1)
    score = (diff > 0).sum(1) + (diff / scale).sum(1) * 0.5
    noise = np.frombuffer(rng.randbytes(8 * len(score)), dtype=np.uint64) / 2.0**64 * 1e-3
    score = np.where(free, score + noise, math.inf)
    return int(np.argmin(score))


def spread(enc: Encoded, count: int, free: np.ndarray, rng) -> list[int]:
    """``count`` rows spread over the space: a Latin hypercube over each tunable's value list,
    each point snapped to the nearest free config."""
    d = len(enc.names)
    strata = []
    for j in range(d):
        order = list(range(count))
        rng.shuffle(order)
        strata.append([int((k + rng.random()) * enc.sizes[j] / count) for k in order])
    rows, free = [], free.copy()
    for k in range(count):
        target = np.array([min(strata[j][k], enc.sizes[j] - 1) for j in range(d)])
        r = nearest(enc, target, free, rng)
        if r is None:
            break
        rows.append(r)
        free[r] = False
    return rows
