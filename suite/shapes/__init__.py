"""Shape data files: benchmark layers (by tier) and correctness cases, kept apart."""

from __future__ import annotations

import tomllib
from pathlib import Path

from suite.problem import Layer

HERE = Path(__file__).parent
TIERS = ("quick", "cpu", "gpu")


FIELDS = {"name", "out", "in", "tokens", "tiers", "source"}  # source: optional provenance


def _size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_layer(entry: object, where: str) -> None:
    """One ``[[layer]]`` entry: every field present, known and of the right kind."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a table with name, out, in, tokens and tiers")
    if missing := sorted({"name", "out", "in", "tokens", "tiers"} - set(entry)):
        raise ValueError(f"{where}: missing {', '.join(missing)}; every [[layer]] needs them")
    if unknown := sorted(set(entry) - FIELDS):
        raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(FIELDS)}")
    if not isinstance(entry["name"], str) or not entry["name"].strip():
        raise ValueError(f"{where}: name must be a non-empty string, got {entry['name']!r}")
    for key in ("out", "in"):
        if not _size(entry[key]):
            raise ValueError(f"{where}: {key} must be an integer >= 1, got {entry[key]!r}")
    tokens = entry["tokens"]
    if not isinstance(tokens, list) or not tokens or not all(_size(t) for t in tokens):
        raise ValueError(
            f"{where}: tokens must be a non-empty list of integers >= 1, got {tokens!r}"
        )
    tiers = entry["tiers"]
    if not isinstance(tiers, list) or not tiers or not set(tiers) <= set(TIERS):
        raise ValueError(f"{where}: tiers must be a non-empty list from {TIERS}, got {tiers!r}")


def read_entries(path: Path, table: str, what: str, example: str) -> list:
    """The ``[[table]]`` entries of a TOML file; a ValueError names the file when it cannot be
    read or holds none (``example``: the bundled file under suite/shapes/ to look at)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"cannot read {what} {path}: {err}") from None
    entries = data.get(table)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[{table}]] entries; see suite/shapes/{example}")
    return entries


def benchmark_layers(tier: str, path: Path | str | None = None) -> list[Layer]:
    """Layers of ``tier`` from a shapes file (default: the bundled benchmark.toml).

    Every entry is checked when the file is read (naming the file and the entry), and a file
    that selects no layer for ``tier`` is an error: the caller has written nothing yet.
    """
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {TIERS}")
    path = Path(path) if path else HERE / "benchmark.toml"
    entries = read_entries(path, "layer", "shapes file", "benchmark.toml")
    for i, entry in enumerate(entries):
        name = entry.get("name", "?") if isinstance(entry, dict) else "?"
        _check_layer(entry, f"{path}: [[layer]] #{i + 1} ({name!r})")
    layers = []
    for entry in entries:
        if tier not in entry["tiers"]:
            continue
        tokens = entry["tokens"][:1] if tier in ("quick", "cpu") else entry["tokens"]
        layers += [Layer(entry["name"], entry["out"], entry["in"], t) for t in tokens]
    if not layers:
        raise ValueError(
            f"{path}: no layer is in tier {tier!r}; add {tier!r} to some layer's tiers, or "
            "pick the tier the file is for (--quick is tier 'quick')"
        )
    return layers


def correctness_cases(path: Path = HERE / "correctness.toml") -> list[dict]:
    return tomllib.loads(path.read_text())["case"]
