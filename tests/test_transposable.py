import itertools

import pytest
import torch

from bimask import NMPattern, transposable_mask
from bimask.transposable import (
    exact_transposable_blocks,
    greedy_transposable_blocks,
    to_blocks,
)


def brute_force_best(block: torch.Tensor, n: int) -> float:
    m = block.shape[0]
    rows = [r for r in itertools.product((0, 1), repeat=m) if sum(r) == n]
    best = -1.0
    for combo in itertools.product(rows, repeat=m):
        a = torch.tensor(combo, dtype=block.dtype)
        if (a.sum(0) == n).all():
            best = max(best, float((a * block).sum()))
    return best


@pytest.mark.parametrize("n,m", [(1, 4), (2, 4), (3, 4), (1, 3), (2, 3), (2, 5)])
def test_exact_equals_brute_force(n, m, rng):
    blocks = torch.rand(12, m, m, generator=rng, dtype=torch.float64)
    blocks[0] = blocks[0].round(decimals=1)  # ties
    blocks[1] = 1.0  # all equal
    sel = exact_transposable_blocks(blocks, n)
    assert (sel.sum(1) == n).all() and (sel.sum(2) == n).all()
    count = 12 if m <= 4 else 3
    for b in range(count):
        assert float((blocks[b] * sel[b]).sum()) == pytest.approx(brute_force_best(blocks[b], n))


@pytest.mark.parametrize("pattern", ["2:4", "1:4", "2:8", "4:8", "1:16", "8:16"])
def test_masks_valid_both_directions_and_greedy_within_bound(pattern, rng):
    p = NMPattern.parse(pattern)
    w = torch.randn(2 * p.m, 3 * p.m, generator=rng)
    exact = transposable_mask(w, pattern)
    greedy = transposable_mask(w, pattern, exact=False)
    for mask in (exact, greedy):
        blocks = to_blocks(mask, p.m)
        assert (blocks.sum(1) <= p.n).all() and (blocks.sum(2) <= p.n).all()
    blocks_exact = to_blocks(exact, p.m)
    assert (blocks_exact.sum(1) == p.n).all() and (blocks_exact.sum(2) == p.n).all()
    a = to_blocks(w.abs(), p.m)
    opt = (a * to_blocks(exact, p.m)).sum((1, 2))
    got = (a * to_blocks(greedy, p.m)).sum((1, 2))
    assert (got >= 0.5 * opt - 1e-6).all()  # the 2-approximation bound, block by block
    assert (got <= opt + 1e-5).all()  # and the exact one really is optimal


def test_greedy_is_right_for_n_other_than_4():
    # the reference greedy hard-codes N=4; at 1:4 it would keep up to 4 per row
    w = torch.arange(16.0).reshape(4, 4)
    g = greedy_transposable_blocks(w[None], 1)[0]
    assert g.sum(0).tolist() == [1, 1, 1, 1] and g.sum(1).tolist() == [1, 1, 1, 1]
    assert g[3, 3] and g[2, 2]  # largest first, then next admissible


def test_bad_shapes():
    with pytest.raises(ValueError, match="rows"):
        transposable_mask(torch.randn(6, 8), "2:4")
    with pytest.raises(ValueError, match="2-D"):
        transposable_mask(torch.randn(4, 4, 3, 3), "2:4")
