"""Search spaces: named tunables with value lists and restrictions; configs as values.

They live here, in the lowest layer, because kernel variants declare their tunables with them;
the suite searches them (suite.space re-exports both).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    """One point of a search space: hashable, ordered by parameter name, serialisable."""

    params: tuple[tuple[str, object], ...]

    @classmethod
    def of(cls, mapping: Mapping[str, object]) -> Config:
        return cls(tuple(sorted(mapping.items())))

    def to_dict(self) -> dict:
        return dict(self.params)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Config:
        return cls.of(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def __getitem__(self, name: str) -> object:
        return self.to_dict()[name]


Restriction = Callable[[dict], bool]


@dataclass(frozen=True)
class SearchSpace:
    """The product of ``tunables`` filtered by every restriction (callables on a config dict)."""

    tunables: Mapping[str, tuple] = field(default_factory=dict)
    restrictions: tuple[Restriction, ...] = ()

    def __post_init__(self) -> None:
        for name, values in self.tunables.items():
            if not values:
                raise ValueError(f"tunable {name!r} has no values")

    def allows(self, config: Mapping[str, object]) -> bool:
        return all(rule(dict(config)) for rule in self.restrictions)

    def checked(self, params: Mapping[str, object], name: str) -> Config:
        """``params`` as a Config of this space; a ValueError naming ``name`` (the kernel) when
        a tunable is missing or unknown, a value is not in its list, or a restriction fails."""
        if set(params) != set(self.tunables):
            missing = sorted(set(self.tunables) - set(params))
            unknown = sorted(set(params) - set(self.tunables))
            raise ValueError(
                f"{name} config {dict(params)}: tunables missing {missing}, unknown {unknown}"
            )
        if bad := {n: v for n, v in params.items() if v not in self.tunables[n]}:
            raise ValueError(f"{name} config {dict(params)}: values {bad} are not in its space")
        if not self.allows(params):
            raise ValueError(f"{name} config {dict(params)} breaks one of its restrictions")
        return Config.of(params)

    def __iter__(self) -> Iterator[Config]:
        names = sorted(self.tunables)
        for values in itertools.product(*(self.tunables[n] for n in names)):
            point = dict(zip(names, values, strict=True))
            if self.allows(point):
                yield Config.of(point)

    def configs(self) -> list[Config]:
        return list(self.__iter__())  # not list(self): that asks __len__, which calls this

    @property
    def size_unrestricted(self) -> int:
        n = 1
        for values in self.tunables.values():
            n *= len(values)
        return n

    def __len__(self) -> int:
        return len(self.configs())

    def neighbours(self, config: Config) -> list[Config]:
        """Valid configs that differ from ``config`` by one step in one tunable's value list."""
        point, out = config.to_dict(), []
        for name, values in self.tunables.items():
            i = values.index(point[name])
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    cand = dict(point, **{name: values[j]})
                    if self.allows(cand):
                        out.append(Config.of(cand))
        return out
