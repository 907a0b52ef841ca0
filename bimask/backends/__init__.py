"""The one seam between training and GEMM implementations.

A backend supplies the three GEMMs of a sparse layer: the forward with W*Mf, the input gradient
with W*Mb, and the dense weight gradient. ``torch`` (plain PyTorch, CPU and GPU) is the default
and the reference; ``kernels`` runs this project's sparse kernels on a GPU, ``cusparselt``
NVIDIA's cuSPARSELt (through ``torch._cslt_sparse_mm``), ``cutlass_sm90`` this project's CUTLASS
3.x sm90 sparse builds (Hopper). One module per backend; this registry is the only place that
names them.
"""

from __future__ import annotations

import sys

from bimask.backends import compressed
from bimask.backends.base import LayerOps
from bimask.backends.cusparselt_ops import cusparselt_linear
from bimask.backends.cutlass_ops import cutlass_linear
from bimask.backends.kernels_ops import kernels_linear
from bimask.backends.torch_ops import TorchConvOps, TorchLinearOps, torch_conv2d, torch_linear

# backend -> layer kind -> factory(layer=..., **conv_args)
BACKENDS = {
    "torch": {"linear": torch_linear, "conv2d": torch_conv2d},
    "kernels": {"linear": kernels_linear},
    "cusparselt": {"linear": cusparselt_linear},
    "cutlass_sm90": {"linear": cutlass_linear},
}


# the library backends: name -> library, whose sparse tensor cores refuse some patterns and shapes
LIBRARIES = {"cusparselt": "cuSPARSELt", "cutlass_sm90": "CUTLASS sm90"}


def pattern_refusal(backend: str, pattern) -> str | None:
    """Why ``backend`` cannot run ``pattern`` (an NMPattern) at all; None when it can."""
    if backend not in LIBRARIES:
        return None
    return compressed.pattern_reason(pattern, LIBRARIES[backend])


def shape_refusal(backend: str, out_features: int, in_features: int) -> str | None:
    """Why ``backend`` cannot run a sparse GEMM layer of this (out x K) shape; None when it
    can (``sparsify`` then leaves that layer's GEMMs on torch, saying why)."""
    if backend not in LIBRARIES:
        return None
    return compressed.shape_reason(out_features, in_features, LIBRARIES[backend], advice=False)


def check_backend(backend: str, kind: str) -> None:
    """A ValueError saying what to use instead when ``backend`` has no ``kind`` GEMMs."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    if kind not in BACKENDS[backend]:
        have = sorted(b for b, kinds in BACKENDS.items() if kind in kinds)
        raise ValueError(f"backend {backend!r} has no {kind} GEMMs; {kind} runs on {have}")


def check_backends() -> None:
    """Raise what a backend found but did not report at once: the kernels backend's N:M
    violations (one host sync per device; call it at the end of an epoch). Nothing to do if no
    layer ever ran on the kernels."""
    if "kernels.training" in sys.modules:  # imported only by a layer that asked for it
        sys.modules["kernels.training"].check_violations()


def layer_ops(kind: str, backend: str = "torch", layer=None, **conv_args) -> LayerOps:
    """The GEMM implementation for a layer ``kind`` ("linear" or "conv2d") on ``backend``."""
    check_backend(backend, kind)
    return BACKENDS[backend][kind](layer=layer, **conv_args)


__all__ = [
    "BACKENDS",
    "LayerOps",
    "TorchConvOps",
    "TorchLinearOps",
    "check_backend",
    "check_backends",
    "layer_ops",
    "pattern_refusal",
    "shape_refusal",
]
