"""The GEMM backend interface: one small frozen record per implementation."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from suite.problem import GemmInputs, GemmProblem
from suite.space import Config, SearchSpace


class BackendFailure(Exception):
    """A config that cannot run; ``status`` is one of compile, launch, resources, unsupported."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def kernel_config(config: Config) -> Config:
    """A kernel's config: the backend's without ``perm_realisation`` (how the suite realises the
    permutation around the kernel, not a define of it)."""
    return Config.of({k: v for k, v in config.to_dict().items() if k != "perm_realisation"})


def problem_operand(store: dict, key: tuple, a: torch.Tensor, build: Callable[[], object],
                    keep: int = 1):  # fmt: skip
    """The operand ``build()`` makes for the problem whose A is ``a`` (e.g. its compressed
    form), built once for all of that problem's configs. ``store`` keeps at most ``keep``
    entries, all of one problem: a new problem lets the previous one's operands go. ``key``
    must start with ``id(a)``; the entry also holds ``a`` weakly, so a reused id never hits."""
    hit = store.get(key)
    if hit is not None and hit[0]() is a:
        return hit[1]
    value = build()
    if len(store) >= keep or any(k[0] != key[0] for k in store):
        store.clear()
    store[key] = (weakref.ref(a), value)
    return value


@dataclass(frozen=True)
class Prepared:
    """What a backend returns for one (problem, config): a timed call and a checked call."""

    run: Callable[[], object]  # the work that is timed
    run_into: Callable[[torch.Tensor], None]  # writes the result into a (poisoned) buffer
    sparse_path: bool  # True when the N:M structure is exploited (else labelled dense)


@dataclass(frozen=True)
class Backend:
    """A GEMM implementation behind one call.

    ``prepare(problem, inputs, config)`` does the untimed setup (compression, compile, plans) and
    returns a :class:`Prepared`; it raises :class:`BackendFailure` for a config that cannot run.
    """

    name: str
    device: str  # "cpu" or "cuda"
    kind: str  # "dense" (ignores the mask) or "sparse"
    prepare: Callable[[GemmProblem, GemmInputs, Config], Prepared]
    space: Callable[[GemmProblem], SearchSpace]
    supports: Callable[[GemmProblem], str | None] = lambda p: None  # None or why not
    available: Callable[[], str | None] = lambda: None  # None or why not
    version: Callable[[], str] = lambda: torch.__version__  # part of the cache key
    # what the kernel is built from, without the toolchain (None: the version): rows of the same
    # backend and source, on any device, may warm-start each other's searches (suite/warm.py)
    source: Callable[[], str] | None = None
    dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16")
    description: str = ""
    baseline: bool = False  # the dense reference the speed-ups are computed against
    # True: a dense GEMM timed on the unmasked weight, i.e. the dense layer a sparse one
    # replaces. A dense GEMM's speed depends on its data (zeros draw less power: the device notes
    # here record 894 TFLOP/s for an all-zero 8192^3 bf16 product against 788 on random data,
    # on an H200), so timing it on the masked weight would make the dense side look faster.
    dense_operand: bool = False
    # a handful of known-good configs for a time-bounded first look (None: the full space)
    quick_space: Callable[[GemmProblem], SearchSpace] | None = None
    extra: dict = field(default_factory=dict)

    def kernel_source(self) -> str:
        """The kernel source identity the rows record (``kernel_source``)."""
        return (self.source or self.version)()
