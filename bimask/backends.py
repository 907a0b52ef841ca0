"""The one seam between training and GEMM implementations.

A backend supplies the three GEMMs of a sparse layer: the forward with W*Mf, the input gradient
with W*Mb, and the dense weight gradient. ``torch`` (plain PyTorch, CPU and GPU) is the default
and the reference; the kernels package can register tuned sparse kernels here on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


class LayerOps(Protocol):
    def describe(self) -> str: ...  # where each GEMM of the layer runs
    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None): ...
    def input_grad(self, dy: torch.Tensor, weight: torch.Tensor, x_shape: torch.Size): ...
    def weight_grad(self, x: torch.Tensor, dy: torch.Tensor, w_shape: torch.Size): ...
    def bias_grad(self, dy: torch.Tensor): ...


@dataclass(frozen=True)
class TorchLinearOps:
    def describe(self) -> str:
        return "fwd, dX, dW on torch (masked dense math)"

    def forward(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def input_grad(self, dy, weight, x_shape):
        return dy @ weight  # dX = dY (W*Mb)

    def weight_grad(self, x, dy, w_shape):
        return dy.reshape(-1, w_shape[0]).t() @ x.reshape(-1, w_shape[1])

    def bias_grad(self, dy):
        return dy.reshape(-1, dy.shape[-1]).sum(0)


@dataclass(frozen=True)
class TorchConvOps:
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def describe(self) -> str:
        return "fwd, dX, dW on torch (masked dense math)"

    def forward(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def input_grad(self, dy, weight, x_shape):
        return conv2d_input(x_shape, weight, dy, self.stride, self.padding, self.dilation)

    def weight_grad(self, x, dy, w_shape):
        return conv2d_weight(x, w_shape, dy, self.stride, self.padding, self.dilation)

    def bias_grad(self, dy):
        return dy.sum(dim=(0, 2, 3))


def _torch_linear(layer=None) -> LayerOps:
    return TorchLinearOps()


def _torch_conv2d(layer=None, **conv_args) -> LayerOps:
    return TorchConvOps(**conv_args)


def _kernels_linear(layer) -> LayerOps:
    """This project's sparse kernels for a SparseLinear (CUDA; bfloat16/float16 GEMMs).

    The one place training reaches the kernels package, imported only when a layer asks."""
    from kernels.training import KernelLinearOps

    spec = layer._spec
    return KernelLinearOps(
        pattern=str(layer.pattern),
        sparse_forward=lambda: spec.masks is not None,
        sparse_backward=lambda: spec.backward_nm and not layer.backward_as_forward,
        perm=lambda: layer.perm if spec.uses_permutation else None,
    )


# backend -> layer kind -> factory(layer=..., **conv_args)
BACKENDS = {
    "torch": {"linear": _torch_linear, "conv2d": _torch_conv2d},
    "kernels": {"linear": _kernels_linear},
}


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
    import sys

    if "kernels.training" in sys.modules:  # imported only by a layer that asked for it
        sys.modules["kernels.training"].check_violations()


def layer_ops(kind: str, backend: str = "torch", layer=None, **conv_args) -> LayerOps:
    """The GEMM implementation for a layer ``kind`` ("linear" or "conv2d") on ``backend``."""
    check_backend(backend, kind)
    return BACKENDS[backend][kind](layer=layer, **conv_args)
