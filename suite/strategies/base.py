"""The strategy interface: a budget, an objective, and a seeded random generator."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from suite.space import Config, SearchSpace


class BudgetExhausted(Exception):
    """Raised by :class:`Objective` when the evaluation or time budget is spent."""


@dataclass
class Objective:
    """Wraps the cost function: counts evaluations, enforces the budget, remembers results.

    ``cost(config)`` returns the time to minimise (math.inf for a failed config).
    Re-asking a config returns the remembered cost without spending budget.
    """

    cost: Callable[[Config], float]
    max_evals: int | None = None
    max_seconds: float | None = None
    seen: dict[Config, float] = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter)

    def __call__(self, config: Config) -> float:
        if config in self.seen:
            return self.seen[config]
        if self.max_evals is not None and len(self.seen) >= self.max_evals:
            raise BudgetExhausted
        if self.max_seconds is not None and time.perf_counter() - self._start > self.max_seconds:
            raise BudgetExhausted
        self.seen[config] = value = self.cost(config)
        return value

    def best(self) -> tuple[Config | None, float]:
        if not self.seen:
            return None, math.inf
        config = min(self.seen, key=self.seen.__getitem__)
        return config, self.seen[config]


Strategy = Callable[[SearchSpace, Objective, random.Random], None]
