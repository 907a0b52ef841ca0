"""Bi-Mask backward mask and the permutation score it is chosen by."""

from __future__ import annotations

import torch

from bimask.masks import check_groupable, topn_in_groups
from bimask.patterns import NMPattern


def check_perm(perm: torch.Tensor, rows: int) -> None:
    if not isinstance(perm, torch.Tensor) or perm.dtype != torch.long or perm.dim() != 1:
        raise ValueError("perm must be a 1-D LongTensor (torch.long) of row indices")
    if perm.numel() != rows:
        raise ValueError(f"perm has {perm.numel()} entries but the weight has {rows} rows")
    seen = torch.zeros(rows, dtype=torch.bool, device=perm.device)
    if perm.min() < 0 or perm.max() >= rows or seen.index_fill_(0, perm, True).sum() != rows:
        raise ValueError(f"perm is not a permutation of 0..{rows - 1}")


def _groups_of_rows(matrix: torch.Tensor, perm: torch.Tensor, m: int) -> torch.Tensor:
    """(out, K) -> (K, out/m, m): for each column, pi-ordered groups of m rows."""
    out, k = matrix.shape
    return matrix[perm].reshape(out // m, m, k).permute(2, 0, 1)


def bimask_backward_mask(
    weight2d: torch.Tensor,
    forward_mask2d: torch.Tensor,
    pattern: str | NMPattern,
    perm: torch.Tensor,
    *,
    check: bool = True,
) -> torch.Tensor:
    """Backward mask Mb: N:M along the output dimension over pi-ordered groups of M rows.

    Scores are |W * Mf|, so pruned weights count as zero, and the result is intersected with Mf:
    Mb keeps the top min(N, forward-kept) forward-kept weights of every backward group, and
    Mb is a subset of Mf. With ``perm = arange(out)`` this is the paper's formula.
    ``check=False`` skips the check that ``perm`` is a permutation (its values are read on the
    host: a device sync); training passes it, its pi being checked where it is set or loaded.
    """
    pattern = NMPattern.parse(pattern)
    out, k = weight2d.shape
    if forward_mask2d.shape != weight2d.shape:
        raise ValueError(
            f"forward mask shape {tuple(forward_mask2d.shape)} != weight shape {(out, k)}"
        )
    check_groupable(out, pattern, "output dimension (Bi-Mask backward groups)")
    if check:
        check_perm(perm, out)
    fmask = forward_mask2d.bool()
    # Pruned entries score -1, below every kept |w| >= 0: a kept weight that is exactly zero
    # still beats them, so each group keeps exactly min(N, forward-kept) weights.
    scores = torch.where(fmask, weight2d.detach().abs(), -1.0)
    grouped = topn_in_groups(_groups_of_rows(scores, perm, pattern.m), pattern.n)
    permuted = grouped.permute(1, 2, 0).reshape(out, k)
    mask = torch.empty_like(permuted)
    mask[perm] = permuted  # scatter back with the inverse of pi
    return mask & fmask


def permutation_score(
    forward_mask2d: torch.Tensor, pattern: str | NMPattern, perm: torch.Tensor
) -> int:
    """Sum over backward groups of min(N, forward-kept count): forward-kept weights that survive."""
    pattern = NMPattern.parse(pattern)
    out = forward_mask2d.shape[0]
    check_groupable(out, pattern, "output dimension (Bi-Mask backward groups)")
    check_perm(perm, out)
    counts = _groups_of_rows(forward_mask2d.to(torch.int32), perm, pattern.m).sum(-1)
    return int(counts.clamp(max=pattern.n).sum())
