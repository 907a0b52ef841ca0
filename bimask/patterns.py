"""N:M sparsity patterns: parsing and validation."""

from __future__ import annotations

from dataclasses import dataclass

MAX_M = 64  # the largest group size any mask routine here is tested for


@dataclass(frozen=True, order=True)
class NMPattern:
    """Keep at most ``n`` of every ``m`` consecutive weights along the grouped dimension.

    Valid patterns have integers ``1 <= n < m <= 64``: ``n == m`` would be dense and ``n == 0``
    would keep nothing.
    """

    n: int
    m: int

    def __post_init__(self) -> None:
        for name, value in (("N", self.n), ("M", self.m)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"N:M pattern {self.n!r}:{self.m!r}: {name} must be an integer, got {value!r}"
                )
        if not (1 <= self.n < self.m <= MAX_M):
            raise ValueError(
                f"N:M pattern {self.n}:{self.m} is invalid: need integers 1 <= N < M <= {MAX_M} "
                "(N = M would be dense, N = 0 would prune everything); e.g. '2:4', '1:16'"
            )

    @classmethod
    def parse(cls, value: str | tuple[int, int] | NMPattern) -> NMPattern:
        """Build a pattern from ``"2:4"``, ``(2, 4)`` or an existing pattern."""
        if isinstance(value, NMPattern):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(*value)
        if not isinstance(value, str):
            raise ValueError(f"N:M pattern must be a string like '2:4', got {value!r}")
        parts = value.strip().split(":")
        if len(parts) != 2:
            raise ValueError(f"N:M pattern {value!r} must look like 'N:M', e.g. '2:4'")
        try:
            n, m = (int(p.strip()) for p in parts)
        except ValueError:
            raise ValueError(
                f"N:M pattern {value!r}: N and M must be integers, e.g. '2:4' or '1:16'"
            ) from None
        return cls(n, m)

    @property
    def density(self) -> float:
        """Fraction of weights kept."""
        return self.n / self.m

    def max_kept_per_aligned_window(self, width: int = 4) -> int:
        """Largest number of kept weights any aligned window of ``width`` can hold.

        Sparse tensor cores accept a 16-bit operand when this is at most 2 for width 4.
        """
        if self.m % width == 0:
            return min(self.n, width)
        if width % self.m == 0:
            return self.n * (width // self.m)
        return min(width, self.n * (-(-width // self.m) + 1))

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"
