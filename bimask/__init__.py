"""N:M sparse training with Bi-directional Masks (Bi-Mask) and its baselines, in PyTorch."""

from bimask.backward_mask import bimask_backward_mask, permutation_score
from bimask.desparsify import desparsify
from bimask.layers import SparseConv2d, SparseLinear
from bimask.masks import nm_mask
from bimask.methods import METHODS
from bimask.patterns import NMPattern
from bimask.permutations import PERMUTATIONS, find_permutation
from bimask.physical import PhysicalPermutations, realise_permutations
from bimask.sparsify import LayerDecision, sparsify
from bimask.transposable import transposable_mask

__all__ = [
    "METHODS",
    "NMPattern",
    "PERMUTATIONS",
    "PhysicalPermutations",
    "SparseConv2d",
    "SparseLinear",
    "LayerDecision",
    "bimask_backward_mask",
    "desparsify",
    "find_permutation",
    "nm_mask",
    "permutation_score",
    "realise_permutations",
    "sparsify",
    "transposable_mask",
]
