"""Mask methods as a registry: how each one builds its forward and backward masks.

Masks live on the GEMM view (out x K) of the weight. ``refresh`` is true on the steps where a
method may rebuild cached structure (the Bi-Mask permutation, the transposable mask).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bimask.backward_mask import bimask_backward_mask
from bimask.masks import nm_mask_2d
from bimask.patterns import NMPattern
from bimask.transposable import transposable_mask


@dataclass
class MaskState:
    """What a method may read and update between steps (mirrors the layer's buffers)."""

    perm: torch.Tensor
    cached_mask: torch.Tensor | None
    tmask_exact: bool = True


MaskFn = Callable[[torch.Tensor, NMPattern, MaskState, bool], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class MaskMethod:
    """One training method: its mask function and what it needs of a layer's shape."""

    name: str
    masks: MaskFn | None  # None: dense, no masks at all
    uses_permutation: bool = False
    groups_out: bool = False  # needs out % M == 0 (backward groups along the output dimension)
    backward_nm: bool = False  # the input-gradient GEMM is N:M, so sparse tensor cores apply
    description: str = ""


def _srste(w2d, pattern, state, refresh):
    mf = nm_mask_2d(w2d, pattern)
    return mf, mf


def _tmask(w2d, pattern, state, refresh):
    if refresh or state.cached_mask is None:
        state.cached_mask = transposable_mask(w2d.detach(), pattern, exact=state.tmask_exact)
    return state.cached_mask, state.cached_mask


def _bimask(w2d, pattern, state, refresh):
    mf = nm_mask_2d(w2d, pattern)
    return mf, bimask_backward_mask(w2d, mf, pattern, state.perm, check=False)  # no sync


METHODS: dict[str, MaskMethod] = {
    "dense": MaskMethod("dense", None, description="no mask"),
    "srste": MaskMethod(
        "srste", _srste, description="N:M forward, dX through W*Mf (not N:M along out)"
    ),
    "tmask": MaskMethod(
        "tmask",
        _tmask,
        groups_out=True,
        backward_nm=True,
        description="one transposable mask for both passes, rebuilt every perm_every steps",
    ),
    "bimask": MaskMethod(
        "bimask",
        _bimask,
        uses_permutation=True,
        groups_out=True,
        backward_nm=True,
        description="N:M forward mask + permuted N:M backward mask (subset of the forward)",
    ),
}


def get_method(name: str) -> MaskMethod:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
