"""The warm phase every strategy starts with when given a warm start (the best configs of related
problems, nearest first): evaluate them, then the one-tunable ring of the first (the nearest
related problem's best: on another device or at a neighbouring shape the best config is often
one tunable away from it; the moves of one step along a value list first, then two, and so on,
in seeded random order within a step), then hand over to the strategy, which searches around
all of them.

Budget: the warm configs and the ring together take at most :data:`SHARE` of the evaluation
budget, so the strategy always gets the rest; an unbudgeted search skips the ring. Configs the
space does not hold are skipped at no cost; failed ones cost an evaluation and never win.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

from suite.space import Config, SearchSpace
from suite.strategies.base import Objective
from suite.strategies.moves import encoded

SHARE = 0.75


def in_space(space: SearchSpace, config: Config) -> bool:
    """The same tunables, each value one of the tunable's, and every restriction met."""
    point = config.to_dict()
    if set(point) != set(space.tunables):
        return False
    return all(point[n] in space.tunables[n] for n in point) and space.allows(point)


def warm_configs(space: SearchSpace, warm: Sequence[Config]) -> list[Config]:
    """The warm-start configs that are in this space, in order, each once (a config of another
    problem's space may break this one's rules)."""
    return [c for c in dict.fromkeys(warm) if in_space(space, c)]


def warm_phase(
    space: SearchSpace, objective: Objective, warm: Sequence[Config], rng: random.Random
) -> None:
    """Evaluate ``warm`` and the ring of its first config (may raise BudgetExhausted)."""
    configs = warm_configs(space, warm)
    for config in configs:
        objective(config)
    if not configs or objective.max_evals is None:
        return
    enc = encoded(space)
    centre = enc.index[enc.row[configs[0]]]
    ring = np.flatnonzero(enc.unseen(objective.seen) & ((enc.index != centre).sum(1) == 1))
    steps = np.abs(enc.index[ring] - centre).sum(1)  # how far along its value list it moves
    order = [int(r) for r in ring]
    rng.shuffle(order)  # ties in random order: sorting below is stable
    order.sort(key=lambda r: int(steps[np.searchsorted(ring, r)]))
    room = math.floor(SHARE * objective.max_evals) - len(objective.seen)
    for r in order[: max(room, 0)]:
        objective(enc.configs[r])
