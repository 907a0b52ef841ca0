"""Evaluate every config of the space, in order (stops when the budget is spent)."""


def brute_force(space, objective, rng) -> None:
    for config in space:
        objective(config)
