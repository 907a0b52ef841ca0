"""What the training-backend tests share: a torch-backend layer and its twin on another backend
from the same state, one forward + backward, and a relative error."""

from __future__ import annotations

import torch

from bimask import SparseLinear


def pair(backend, method, pattern="2:4", permutation="greedy", **kw):
    """(reference on torch, the same 64 -> 32 SparseLinear on ``backend``), equal state."""
    torch.manual_seed(0)
    ref = SparseLinear(64, 32, method=method, pattern=pattern, permutation=permutation, **kw)
    got = SparseLinear(
        64, 32, method=method, pattern=pattern, permutation=permutation, backend=backend, **kw
    )
    got.load_state_dict(ref.state_dict())
    return ref, got


def run(layer, x, dy):
    """(output, input gradient) of one forward + backward with output gradient ``dy``."""
    x = x.clone().requires_grad_()
    y = layer(x)
    (y * dy).sum().backward()
    return y, x.grad


def rel(a, b):
    return float((a - b).detach().abs().max() / b.detach().abs().max())
