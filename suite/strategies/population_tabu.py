"""A population with tabu memory (after Kernel Tuner's adaptive tabu grey wolf, the leader
among its strategies on the issue-20 landscapes).

Members start spread over the space (a Latin hypercube). Each step a member is pulled toward
the three best configs found (each tunable copied from one of them with a probability that
grows over the budget), then one or two tunables are set to any value; the wished-for point is
snapped to the nearest config not yet evaluated (the tabu memory: nothing is evaluated twice,
so no member walks back). Some steps instead set one tunable of the member to any unvisited
value (more of them as the budget is spent). A member that has not improved for a few steps
restarts at an unvisited spread-out point. Everything is tied to the budget: the pull,
the acceptance temperature and the mutation width move from exploring to exploiting as the
evaluations are spent.
"""

from __future__ import annotations

import math

import numpy as np

from suite.strategies.moves import budget_of, encoded, nearest, spread


def population_tabu(
    space, objective, rng, size: int | None = None, stall: int = 4, local: float = 0.25
) -> None:
    enc = encoded(space)
    if not enc.configs:
        return
    budget = budget_of(len(enc.configs), objective)
    size = size or max(3, min(8, budget // 8))
    free = enc.unseen(objective.seen)
    warm = sorted((c for c in objective.seen if c in enc.row), key=objective.seen.__getitem__)
    members = [enc.row[c] for c in warm[: size // 2]]  # a warm start: the best already evaluated
    members += spread(enc, size - len(members), free, rng)
    costs = [objective(enc.configs[r]) for r in members]
    free[members] = False
    stalled = [0] * len(members)
    while free.any():
        progress = min(len(objective.seen) / budget, 1.0)
        ranked = sorted(objective.seen, key=objective.seen.__getitem__)[:3]
        leaders = [enc.index[enc.row[c]] for c in ranked if c in enc.row]
        for i, r in enumerate(members):
            if rng.random() < local * (1.0 + progress):  # one tunable to any unvisited value
                ring = np.flatnonzero(free & ((enc.index != enc.index[r]).sum(1) == 1))
                if len(ring):
                    new = int(ring[rng.randrange(len(ring))])
                    free[new] = False
                    cost = objective(enc.configs[new])
                    if cost < costs[i]:
                        members[i], costs[i], stalled[i] = new, cost, 0
                    else:
                        stalled[i] += 1
                    continue
            target = enc.index[r].copy()
            pull = 0.2 + 0.6 * progress
            for j in range(len(enc.names)):
                if rng.random() < pull:
                    target[j] = leaders[rng.randrange(len(leaders))][j]
            for j in rng.sample(range(len(enc.names)), k=min(len(enc.names), rng.choice((1, 2)))):
                width = max(1, round(enc.sizes[j] * (1.0 - progress)))
                lo, hi = max(0, target[j] - width), min(enc.sizes[j] - 1, target[j] + width)
                target[j] = rng.randint(lo, hi)
            new = nearest(enc, target, free, rng)
            if new is None:
                return
            free[new] = False
            cost = objective(enc.configs[new])
            temperature = 0.2 * (1.0 - progress) + 1e-3
            worse = (cost - costs[i]) / costs[i] if math.isfinite(costs[i]) else -1.0
            improved = cost < costs[i]
            if improved or (math.isfinite(cost) and rng.random() < math.exp(-worse / temperature)):
                members[i], costs[i] = new, cost
                stalled[i] = 0 if improved else stalled[i] + 1
            else:
                stalled[i] += 1
            if stalled[i] >= stall and free.any():  # restart a stalled member somewhere new
                (r2,) = spread(enc, 1, free, rng) or [None]
                if r2 is None:
                    return
                free[r2] = False
                members[i], costs[i], stalled[i] = r2, objective(enc.configs[r2]), 0
