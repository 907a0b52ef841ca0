"""Forward N:M masks: keep the N largest |w| of every group of M along the reduction dimension."""

from __future__ import annotations

import torch

from bimask.layout import check_conv_order, check_weight, from_gemm, to_gemm
from bimask.patterns import NMPattern

# Up to this group size the pairwise-rank kernel (one comparison per pair) beats sorting.
_PAIRWISE_MAX_M = 8


def topn_in_groups(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Boolean mask of the ``n`` largest entries along the last dimension.

    Ties go to the lower index, so the result is deterministic. Vectorised over all leading
    dimensions; no Python loop over rows or groups.
    """
    m = scores.shape[-1]
    if m <= _PAIRWISE_MAX_M:
        # rank_i = #{j: s_j beats s_i}; j > i beats i iff s_j > s_i, otherwise i beats j.
        cols = scores.unbind(-1)
        ranks = [torch.zeros(cols[0].shape, dtype=torch.uint8, device=scores.device) for _ in cols]
        for i in range(m):
            for j in range(i + 1, m):
                j_beats_i = cols[j] > cols[i]
                ranks[i].add_(j_beats_i)
                ranks[j].add_(~j_beats_i)
        return torch.stack(ranks, -1) < n
    if n == 1:  # argmax returns the first maximum: the same lower-index tie rule, one pass
        idx = scores.argmax(-1, keepdim=True)
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        return mask.scatter_(-1, idx, True)
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :n]
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(
        -1, order, True
    )


def check_groupable(size: int, pattern: NMPattern, what: str) -> None:
    if size % pattern.m:
        raise ValueError(
            f"{what} has size {size}, not a multiple of M={pattern.m} for pattern {pattern}; "
            "groups are never formed across rows: pad the layer, pick a pattern whose M divides "
            f"{size}, or leave this layer dense"
        )


def nm_mask_2d(matrix: torch.Tensor, pattern: NMPattern) -> torch.Tensor:
    """N:M mask of an out x K matrix along K (rows are independent). No input checks."""
    rows, k = matrix.shape
    groups = matrix.detach().abs().reshape(rows, k // pattern.m, pattern.m)
    return topn_in_groups(groups, pattern.n).reshape(rows, k)


def nm_mask(
    weight: torch.Tensor, pattern: str | NMPattern, *, conv_order: str = "nhwc"
) -> torch.Tensor:
    """Forward N:M mask of a Linear (out, in) or Conv2d (out, in, kh, kw) weight.

    Groups run along the GEMM reduction dimension K: the input dimension of a Linear weight; for
    a conv, input channels at each kernel position (``conv_order="nhwc"``, the default, as in ASP
    and implicit-GEMM kernels) or the flattened (in, kh, kw) kernel order (``"nchw"``, as in the
    original Bi-Mask code). Returns a bool tensor of the weight's shape.

    Raises:
        ValueError: bad pattern, NaN/Inf weights, or a grouped dimension not divisible by M.
        TypeError: a non-floating-point weight.
    """
    pattern = NMPattern.parse(pattern)
    check_weight(weight)
    check_conv_order(conv_order)
    if weight.dim() == 4 and conv_order == "nhwc":
        check_groupable(weight.shape[1], pattern, "conv input channels (NHWC grouping)")
    matrix = to_gemm(weight, conv_order)
    check_groupable(matrix.shape[1], pattern, "reduction dimension K")
    return from_gemm(nm_mask_2d(matrix, pattern), weight.shape, conv_order)


def satisfies_nm(mask2d: torch.Tensor, pattern: NMPattern, dim: int = 1) -> bool:
    """True when every group of M consecutive entries along ``dim`` keeps at most N."""
    m = mask2d if dim == 1 else mask2d.t()
    rows, k = m.shape
    return bool((m.reshape(rows, k // pattern.m, pattern.m).sum(-1) <= pattern.n).all())
