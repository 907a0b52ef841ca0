import pytest
import torch

from bimask import (
    NMPattern,
    bimask_backward_mask,
    find_permutation,
    nm_mask,
    permutation_score,
)
from bimask.masks import satisfies_nm

PATTERNS = ["2:4", "1:4", "2:8", "4:8", "1:16"]


def paper_formula(w, mf, p):
    """Identity permutation: N:M down each column over consecutive rows of |W*Mf|, then & Mf."""
    ws = (w * mf).abs()
    out, k = w.shape
    groups = ws.t().reshape(k, out // p.m, p.m)
    idx = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., : p.n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
    return keep.reshape(k, out).t() & mf


@pytest.mark.parametrize("pattern", PATTERNS)
def test_subset_and_nm_along_permuted_groups(pattern, rng):
    p = NMPattern.parse(pattern)
    w = torch.randn(4 * p.m, 2 * p.m, generator=rng)
    mf = nm_mask(w, pattern)
    perm = torch.randperm(w.shape[0], generator=rng)
    mb = bimask_backward_mask(w, mf, pattern, perm)
    assert (mb & ~mf).sum() == 0
    assert satisfies_nm(mb[perm], p, dim=0)
    # in every backward group it keeps exactly min(N, forward-kept) weights
    counts_f = mf[perm].reshape(-1, p.m, w.shape[1]).sum(1)
    counts_b = mb[perm].reshape(-1, p.m, w.shape[1]).sum(1)
    assert torch.equal(counts_b, counts_f.clamp(max=p.n))
    assert int(mb.sum()) == permutation_score(mf, pattern, perm)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_identity_reproduces_the_paper_formula(pattern, rng):
    p = NMPattern.parse(pattern)
    w = torch.randn(3 * p.m, 4 * p.m, generator=rng)
    mf = nm_mask(w, pattern)
    ident = torch.arange(w.shape[0])
    assert torch.equal(bimask_backward_mask(w, mf, pattern, ident), paper_formula(w, mf, p))


def test_permutation_equals_physically_reordering_rows(rng):
    w = torch.randn(16, 8, generator=rng)
    mf = nm_mask(w, "2:4")
    perm = torch.randperm(16, generator=rng)
    mb = bimask_backward_mask(w, mf, "2:4", perm)
    mb_reordered = bimask_backward_mask(w[perm], mf[perm], "2:4", torch.arange(16))
    assert torch.equal(mb[perm], mb_reordered)


def test_zero_weights_still_fill_backward_groups():
    w = torch.tensor([[0.0, 0.0, 1.0, 2.0], [3.0, 4.0, 0.0, 0.0]] * 2)  # kept zeros in rows 0, 2
    mf = torch.tensor([[True, True, False, False], [True, True, False, False]] * 2)
    mb = bimask_backward_mask(w, mf, "2:4", torch.arange(4))
    assert (mb & ~mf).sum() == 0
    assert int(mb.sum()) == permutation_score(mf, "2:4", torch.arange(4)) == 4


def test_bad_perm_is_rejected(rng):
    w = torch.randn(8, 8, generator=rng)
    mf = nm_mask(w, "2:4")
    for bad in (torch.zeros(8, dtype=torch.long), torch.arange(7), torch.arange(8.0)):
        with pytest.raises(ValueError, match="perm"):
            bimask_backward_mask(w, mf, "2:4", bad)
    with pytest.raises(ValueError, match="output dimension"):
        permutation_score(nm_mask(torch.randn(6, 8), "2:4"), "2:4", torch.arange(6))


def test_find_permutation_registry_and_errors(rng):
    w = torch.randn(32, 32, generator=rng)
    mf = nm_mask(w, "2:4")
    perm = find_permutation(w, mf, "2:4", "random", seed=3, candidates=5)
    assert sorted(perm.tolist()) == list(range(32))
    assert torch.equal(perm, find_permutation(w, mf, "2:4", "random", seed=3, candidates=5))
    with pytest.raises(ValueError, match="unknown permutation strategy"):
        find_permutation(w, mf, "2:4", "annealing")
    with pytest.raises(ValueError, match="bad options"):
        find_permutation(w, mf, "2:4", "greedy", candidates=5)
