"""Evaluate configs in a seeded random order until the budget is spent."""


def random_sample(space, objective, rng) -> None:
    configs = space.configs()
    rng.shuffle(configs)
    for config in configs:
        objective(config)
