"""GEMM backends, a registry keyed by name (CPU baselines, GPU baselines, our kernels, the
CUTLASS sm90 family built here)."""

from __future__ import annotations

from suite.backends.base import Backend, BackendFailure, Prepared
from suite.backends.cpu import CPU_BACKENDS
from suite.backends.cutlass_sm90 import CUTLASS_SM90_BACKENDS
from suite.backends.gpu import GPU_BACKENDS
from suite.backends.ours import OUR_BACKENDS

BACKENDS: dict[str, Backend] = {
    b.name: b for b in CPU_BACKENDS + GPU_BACKENDS + OUR_BACKENDS + CUTLASS_SM90_BACKENDS
}


def register(backend: Backend) -> Backend:
    """Add a backend (the kernels package registers its variants through this)."""
    if backend.name in BACKENDS:
        raise ValueError(f"backend {backend.name!r} is already registered")
    BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def available_backends(device: str) -> list[Backend]:
    return [b for b in BACKENDS.values() if b.device == device and b.available() is None]


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendFailure",
    "Prepared",
    "available_backends",
    "get_backend",
    "register",
]
