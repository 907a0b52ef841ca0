"""Transposable N:M masks (Hubara et al. 2021): N kept per row and per column of each M x M block.

The exact solver is successive shortest paths on the block's bipartite min-cost-flow network
(source -> row, cap N; row -> col, cap 1, cost -|w|; col -> sink, cap N), run in lock-step on
every block at once with Bellman-Ford on the residual graph. The transportation polytope is
integral, so this is the optimum of the LP. The greedy is the 2-approximation: take entries in
decreasing |w| while their row and column both hold fewer than N. It is correct for every N:M
(the reference code hard-codes N=4); it may keep fewer than N in a row or column when it runs out
of admissible entries, which is still a valid N:M mask in both directions.
"""

from __future__ import annotations

import torch

from bimask.layout import check_weight
from bimask.masks import check_groupable
from bimask.patterns import NMPattern

_INF = float("inf")


def to_blocks(matrix: torch.Tensor, m: int) -> torch.Tensor:
    """(R, C) -> (R/m * C/m, m, m) tiles, row-major over tiles."""
    r, c = matrix.shape
    return matrix.reshape(r // m, m, c // m, m).permute(0, 2, 1, 3).reshape(-1, m, m)


def from_blocks(blocks: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    r, c = shape
    m = blocks.shape[-1]
    return blocks.reshape(r // m, c // m, m, m).permute(0, 2, 1, 3).reshape(r, c)


def _shortest_augmenting_paths(w: torch.Tensor, sel: torch.Tensor, rdeg, cdeg, n: int):
    """One Bellman-Ford pass per block over the residual graph; returns distances and parents."""
    b, m, _ = w.shape
    big = torch.full((b, m), _INF, dtype=w.dtype)
    dist_row = torch.where(rdeg < n, torch.zeros_like(big), big)
    parent_row = torch.full((b, m), -1, dtype=torch.long)  # -1: reached from the source
    dist_col, parent_col = big.clone(), torch.zeros((b, m), dtype=torch.long)
    tol = 1e-12
    for _ in range(2 * m + 2):
        # row i -> col j along an unused edge costs -w[i, j]
        via_row = torch.where(sel, _INF, dist_row[:, :, None] - w)
        best_c, arg_c = via_row.min(dim=1)
        upd_c = best_c < dist_col - tol
        dist_col = torch.where(upd_c, best_c, dist_col)
        parent_col = torch.where(upd_c, arg_c, parent_col)
        # col j -> row i back along a used edge earns +w[i, j]
        via_col = torch.where(sel, dist_col[:, None, :] + w, _INF)
        best_r, arg_r = via_col.min(dim=2)
        upd_r = best_r < dist_row - tol
        dist_row = torch.where(upd_r, best_r, dist_row)
        parent_row = torch.where(upd_r, arg_r, parent_row)
        if not (upd_c.any() or upd_r.any()):
            break
    return dist_col, parent_col, parent_row


def exact_transposable_blocks(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Optimal mask for each (m, m) block: N per row and column, maximum kept |score|."""
    w = scores.to(torch.float64)
    b, m, _ = w.shape
    sel = torch.zeros((b, m, m), dtype=torch.bool)
    rdeg = torch.zeros((b, m), dtype=torch.long)
    cdeg = torch.zeros((b, m), dtype=torch.long)
    ar = torch.arange(b)
    for _ in range(n * m):
        dist_col, parent_col, parent_row = _shortest_augmenting_paths(w, sel, rdeg, cdeg, n)
        sink_cost = torch.where(cdeg < n, dist_col, torch.full_like(dist_col, _INF))
        col = sink_cost.argmin(dim=1)
        cdeg[ar, col] += 1
        active = torch.ones(b, dtype=torch.bool)
        for _ in range(m + 1):  # walk back: col <- row (set edge) <- col (clear edge) ...
            row = parent_col[ar, col]
            sel[ar[active], row[active], col[active]] = True
            prev_col = parent_row[ar, row]
            starts = active & (prev_col < 0)
            rdeg[ar[starts], row[starts]] += 1
            active = active & ~starts
            if not active.any():
                break
            sel[ar[active], row[active], prev_col[active]] = False
            col = torch.where(active, prev_col, col)
    return sel


def greedy_transposable_blocks(scores: torch.Tensor, n: int) -> torch.Tensor:
    """The 2-approximation: visit entries by decreasing score, keep if row and column have room."""
    b, m, _ = scores.shape
    order = torch.sort(scores.reshape(b, m * m), dim=1, descending=True, stable=True).indices
    sel = torch.zeros((b, m * m), dtype=torch.bool)
    rdeg = torch.zeros((b, m), dtype=torch.long)
    cdeg = torch.zeros((b, m), dtype=torch.long)
    ar = torch.arange(b)
    for step in range(m * m):  # loop over positions in sorted order, vectorised over blocks
        flat = order[:, step]
        r, c = flat // m, flat % m
        ok = (rdeg[ar, r] < n) & (cdeg[ar, c] < n)
        sel[ar, flat] |= ok
        rdeg[ar, r] += ok.long()
        cdeg[ar, c] += ok.long()
    return sel.reshape(b, m, m)


def transposable_mask(
    weight2d: torch.Tensor, pattern: str | NMPattern, *, exact: bool = True
) -> torch.Tensor:
    """Mask with at most N kept per row and per column of every M x M block (exactly N if exact).

    Both ``weight2d * mask`` and its transpose are N:M, so one mask serves the forward and the
    input-gradient GEMMs. ``exact=True`` maximises the kept magnitude; ``exact=False`` is the
    greedy 2-approximation.
    """
    pattern = NMPattern.parse(pattern)
    check_weight(weight2d)
    if weight2d.dim() != 2:
        raise ValueError(f"transposable_mask needs a 2-D weight, got shape {tuple(weight2d.shape)}")
    check_groupable(weight2d.shape[0], pattern, "rows (output dimension)")
    check_groupable(weight2d.shape[1], pattern, "columns (reduction dimension K)")
    blocks = to_blocks(weight2d.detach().abs().cpu(), pattern.m)
    solve = exact_transposable_blocks if exact else greedy_transposable_blocks
    mask = from_blocks(solve(blocks, pattern.n), tuple(weight2d.shape))
    return mask.to(weight2d.device)
