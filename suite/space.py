"""Search spaces and configs (defined in kernels.space, the lowest layer; re-exported here)."""

from kernels.space import Config, Restriction, SearchSpace

__all__ = ["Config", "Restriction", "SearchSpace"]
