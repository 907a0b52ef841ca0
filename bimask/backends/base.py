"""What every training backend supplies: the GEMMs of one sparse layer."""

from __future__ import annotations

from typing import Protocol

import torch


class LayerOps(Protocol):
    def describe(self) -> str: ...  # where each GEMM of the layer runs
    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None): ...
    def input_grad(self, dy: torch.Tensor, weight: torch.Tensor, x_shape: torch.Size): ...
    def weight_grad(self, x: torch.Tensor, dy: torch.Tensor, w_shape: torch.Size): ...
    def bias_grad(self, dy: torch.Tensor): ...
