"""Shape data files: benchmark layers (by tier) and correctness cases, kept apart."""

from __future__ import annotations

import tomllib
from pathlib import Path

from suite.problem import Layer

HERE = Path(__file__).parent
TIERS = ("quick", "cpu", "gpu")


def benchmark_layers(tier: str, path: Path | str | None = None) -> list[Layer]:
    """Layers of ``tier`` from a shapes file (default: the bundled benchmark.toml)."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {TIERS}")
    path = Path(path) if path else HERE / "benchmark.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"cannot read shapes file {path}: {err}") from None
    missing = [
        i
        for i, e in enumerate(data.get("layer", []))
        if not {"name", "out", "in", "tokens", "tiers"} <= set(e)
    ]
    if "layer" not in data or missing:
        raise ValueError(f"{path}: every [[layer]] needs name, out, in, tokens and tiers")
    layers = []
    for entry in data["layer"]:
        if tier not in entry["tiers"]:
            continue
        tokens = entry["tokens"][:1] if tier in ("quick", "cpu") else entry["tokens"]
        layers += [Layer(entry["name"], entry["out"], entry["in"], t) for t in tokens]
    return layers


def correctness_cases(path: Path = HERE / "correctness.toml") -> list[dict]:
    return tomllib.loads(path.read_text())["case"]
