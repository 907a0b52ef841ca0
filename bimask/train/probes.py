"""Training-time measurements of the masks: backward kept fraction and gradient gap."""

from __future__ import annotations

import torch
from torch import nn

from bimask.layers import SparseMixin


def sparse_layers(model: nn.Module) -> list[SparseMixin]:
    return [m for m in model.modules() if isinstance(m, SparseMixin) and m._spec.masks is not None]


def backward_kept_fraction(model: nn.Module) -> float | None:
    """Weights kept by the backward masks over weights kept by the forward masks (all layers)."""
    layers = sparse_layers(model)
    if not layers:
        return None
    kept_f = sum(int(m.mask_forward.sum()) for m in layers)
    kept_b = sum(int(m.mask_backward.sum()) for m in layers)
    return kept_b / kept_f if kept_f else None


def gradient_gap(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Relative error of the input gradient with the method's backward masks against srste's.

    srste's input gradient is exact through W*Mf; 0 for dense/srste/tmask, > 0 for bimask.
    Runs in eval mode (no permutation search, BN running statistics), restores the mode.
    """
    layers = sparse_layers(model)
    if not layers:
        return None
    was_training = model.training
    model.eval()
    grads = []
    try:
        for as_forward in (False, True):
            for m in layers:
                m.backward_as_forward = as_forward
            x = images.detach().clone().requires_grad_(True)
            loss = nn.functional.cross_entropy(model(x), labels)
            (g,) = torch.autograd.grad(loss, x)
            grads.append(g)
    finally:
        for m in layers:
            m.backward_as_forward = False
        model.train(was_training)
    ref = grads[1].norm()
    return float((grads[0] - grads[1]).norm() / ref) if ref > 0 else 0.0


def reset_mask_time(model: nn.Module) -> None:
    for m in sparse_layers(model):
        m.mask_time_s = 0.0


def mask_time(model: nn.Module) -> float:
    return sum(m.mask_time_s for m in sparse_layers(model))
