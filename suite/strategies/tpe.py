"""A model-guided search: a Tree-structured Parzen Estimator over the space's value lists.

After a spread-out start (a Latin hypercube, a fifth of the budget), the configs evaluated so
far are split into the best quarter ("good") and the rest ("bad", failed configs included).
Per tunable, a Parzen density over its value list is fitted to each group (a kernel that also
credits neighbouring values, plus a uniform prior); a config scores the sum over tunables of
log good-density minus log bad-density. Each step draws candidates from the unvisited configs
in proportion to their good-density and evaluates the best-scoring one; the number of
candidates grows over the budget, so the search moves from exploring to exploiting.
"""

from __future__ import annotations

import math

import numpy as np

from suite.strategies.moves import budget_of, encoded, spread


def _densities(enc, rows: list[int]) -> list[np.ndarray]:
    out = []
    for j, k in enumerate(enc.sizes):
        grid = np.arange(k)
        weights = np.full(k, 1.0 / k)  # prior: one pseudo-observation spread uniformly
        for v in enc.index[rows, j]:
            weights += 0.5 ** np.abs(grid - v) * (1.0 if k > 2 else 0.0) + (grid == v)
        out.append(np.log(weights / weights.sum()))
    return out


def tpe(space, objective, rng, gamma: float = 0.25, local: float = 0.3, start: float = 0.2) -> None:
    enc = encoded(space)
    if not enc.configs:
        return
    budget = budget_of(len(enc.configs), objective)
    free = enc.unseen(objective.seen)
    first = max(4, min(int(budget * start), 20)) - len(objective.seen)
    for r in spread(enc, max(first, 0), free, rng):
        free[r] = False
        objective(enc.configs[r])
    cols = np.arange(len(enc.names))
    while free.any():
        seen = [c for c in objective.seen if c in enc.row]
        seen.sort(key=objective.seen.__getitem__)
        n_good = max(1, math.ceil(gamma * sum(math.isfinite(objective.seen[c]) for c in seen)))
        good = [enc.row[c] for c in seen[:n_good]]
        bad = [enc.row[c] for c in seen[n_good:]] or good
        lg, lb = _densities(enc, good), _densities(enc, bad)
        log_good = np.stack([lg[j][enc.index[:, j]] for j in cols], 1).sum(1)
        score = log_good - np.stack([lb[j][enc.index[:, j]] for j in cols], 1).sum(1)
        progress = min(len(objective.seen) / budget, 1.0)
        gen = np.random.default_rng(int.from_bytes(rng.randbytes(8), "little"))
        pool = np.empty(0, dtype=int)
        if rng.random() < local + (1 - local) * progress:  # one tunable away from a leader
            leader = enc.index[good[min(int(gen.exponential(1.0)), len(good) - 1)]]
            pool = np.flatnonzero(free & ((enc.index != leader).sum(1) == 1))
        if len(pool):
            noise = gen.random(len(pool)) * 1e-6
            best = int(pool[np.argmax(score[pool] + noise)])
        else:
            pool = np.flatnonzero(free)
            weights = np.exp(log_good[pool] - log_good[pool].max())
            draws = min(len(pool), 8 + int(56 * progress))
            picks = gen.choice(pool, size=draws, replace=False, p=weights / weights.sum())
            best = int(picks[np.argmax(score[picks])])
        free[best] = False
        objective(enc.configs[best])
