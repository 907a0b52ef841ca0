"""Argument types shared by every command line (``bimask.train``, ``bimask.compare``, ``suite``).

Each is an argparse ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError`` with the rule and the offending text, which argparse prints as
``error: argument --m: must be an integer >= 1, got '0'`` and exits 2. The same checks are
usable outside argparse (:func:`check`), for values read from files or built in code.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from bimask.patterns import NMPattern

T = TypeVar("T")


class UsageError(ValueError):
    """A bad value given by the user: the CLIs print it as one ``error:`` line and exit 2."""


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer type with a lower bound (``int_at_least(1)`` is :func:`positive_int`)."""

    def parse(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"int>={low}"
    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, time budgets, thresholds)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (weight decay, warm-up epochs)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    """A number in [0, 1) (label smoothing)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return value


def pattern(text: str) -> str:
    """An N:M pattern such as ``2:4``, returned in canonical form."""
    try:
        return str(NMPattern.parse(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def pattern_or_dense(text: str) -> str:
    """An N:M pattern, or ``dense`` (the dense weight-gradient GEMM)."""
    return "dense" if str(text).strip() == "dense" else pattern(text)


def shard(text: str) -> tuple[int, int]:
    """``i/n``: shard i of n, with integers 0 <= i < n."""
    try:
        i, n = (int(part.strip()) for part in str(text).split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must look like i/n with integers, e.g. 0/4; got {text!r}"
        ) from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"needs integers 0 <= i < n, e.g. 0/4; got {text!r}")
    return i, n


def existing_file(text: str) -> str:
    """A path that names an existing file."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return text


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (existence is checked when the run starts)."""
    name = str(text).strip()
    kind, _, index = name.partition(":")
    ok = name in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit())
    if not ok:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N; got {text!r}")
    return name


def check(value: T, kind: Callable[[str], T], what: str) -> T:
    """Apply an argument type to a value outside argparse; raise :class:`UsageError`."""
    try:
        return kind(value if isinstance(value, str) else str(value))
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"{what}: {err}") from None


def one_of(value: str, names: Iterable[str], what: str) -> str:
    """``value`` when it is one of ``names``; else a UsageError that lists them."""
    names = sorted(names)
    if value not in names:
        raise UsageError(f"{what}: unknown value {value!r}; choose one of {names}")
    return value
