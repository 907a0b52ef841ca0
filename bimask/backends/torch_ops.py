"""The ``torch`` backend: plain PyTorch masked dense math (CPU and GPU), the reference."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight

from bimask.backends.base import LayerOps


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


def torch_linear(layer=None) -> LayerOps:
    return TorchLinearOps()


def torch_conv2d(layer=None, **conv_args) -> LayerOps:
    return TorchConvOps(**conv_args)
