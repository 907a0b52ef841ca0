"""The MLP blocks of the measured training step, as data (suite/shapes/step.toml), and their
scaling for a CPU run (every width and the tokens divided by one factor, or fixed tokens)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from suite.shapes import read_entries

DEFAULT = Path(__file__).parent / "shapes" / "step.toml"
FIELDS = {"name", "d_model", "d_hidden", "tokens", "source"}
REQUIRED = ("name", "d_model", "d_hidden", "tokens")
ALIGN = 16  # scaled widths stay multiples of 16: every N:M pattern's M and the kernels' rows


@dataclass(frozen=True)
class Block:
    """Linear(d_model -> d_hidden) -> GELU -> Linear(d_hidden -> d_model) on ``tokens`` rows."""

    name: str
    d_model: int
    d_hidden: int
    tokens: int
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.d_model} -> {self.d_hidden} -> {self.d_model} at {self.tokens:,} tokens"

    def scaled(self, scale: int = 1, tokens: int | None = None) -> Block:
        """Widths divided by ``scale`` (rounded to a multiple of 16), tokens divided by it too
        unless ``tokens`` is given (then every block runs at that many)."""

        def width(w: int) -> int:
            return max(ALIGN, round(w / scale / ALIGN) * ALIGN)

        return replace(
            self,
            d_model=width(self.d_model) if scale > 1 else self.d_model,
            d_hidden=width(self.d_hidden) if scale > 1 else self.d_hidden,
            tokens=tokens if tokens is not None else max(1, self.tokens // scale),
        )


def _size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def load_blocks(path: str | Path | None = None) -> list[Block]:
    """Every ``[[block]]`` of the file (default suite/shapes/step.toml), each entry checked; a
    ValueError names the file and the entry."""
    path = Path(path) if path else DEFAULT
    entries = read_entries(path, "block", "step shapes file", "step.toml")
    blocks = []
    for i, entry in enumerate(entries):
        where = f"{path}: [[block]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be a table with {', '.join(REQUIRED)}")
        if missing := [f for f in REQUIRED if f not in entry]:
            raise ValueError(f"{where}: missing {', '.join(missing)}; every [[block]] needs them")
        if unknown := sorted(set(entry) - FIELDS):
            raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(FIELDS)}")
        for key in ("d_model", "d_hidden", "tokens"):
            if not _size(entry[key]):
                raise ValueError(f"{where}: {key} must be an integer >= 1, got {entry[key]!r}")
        if not isinstance(entry["name"], str) or not entry["name"].strip():
            raise ValueError(f"{where}: name must be a non-empty string")
        blocks.append(Block(**{k: entry[k] for k in FIELDS if k in entry}))
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: block names must be unique, got {names}")
    return blocks
