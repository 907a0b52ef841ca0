"""Simulated annealing over the space's neighbourhood (one tunable moves one step).

Starts from a random config (or the best one already evaluated: a warm start); restarts
from a random config when a walk has no unvisited neighbours; accepts a worse config
with probability exp(-(relative worsening) / T), T cooling geometrically. Stops when every
config has been seen or the budget is spent.
"""

import math


def simulated_annealing(space, objective, rng, t0: float = 0.3, cooling: float = 0.9) -> None:
    configs = space.configs()
    if not configs:
        return
    # a warm start (configs evaluated before the search) starts the walk at the best of them
    current = objective.best()[0] if objective.seen else rng.choice(configs)
    cost = objective(current)
    temperature = t0
    while len(objective.seen) < len(configs):
        fresh = [c for c in space.neighbours(current) if c not in objective.seen]
        if not fresh:  # walk is stuck: restart somewhere new
            current = rng.choice([c for c in configs if c not in objective.seen])
            cost = objective(current)
            continue
        candidate = rng.choice(fresh)
        new = objective(candidate)
        worse = (new - cost) / cost if math.isfinite(cost) and cost > 0 else -1.0
        if new <= cost or (math.isfinite(new) and rng.random() < math.exp(-worse / temperature)):
            current, cost = candidate, new
        temperature = max(temperature * cooling, 1e-3)
