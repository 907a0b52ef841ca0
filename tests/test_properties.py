"""Property tests (hypothesis) for the mask functions."""

import pytest

hypothesis = pytest.importorskip("hypothesis")
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bimask import (  # noqa: E402
    NMPattern,
    bimask_backward_mask,
    nm_mask,
    permutation_score,
    transposable_mask,
)
from bimask.transposable import to_blocks  # noqa: E402

patterns = st.sampled_from(["2:4", "1:4", "2:8", "4:8", "1:16", "3:4", "1:2"])


@st.composite
def weights(draw):
    p = NMPattern.parse(draw(patterns))
    rows = draw(st.integers(1, 4)) * p.m
    cols = draw(st.integers(1, 4)) * p.m
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    if draw(st.booleans()):  # coarse values: many ties
        w = w.round()
    return p, w, g


@settings(max_examples=60, deadline=None)
@given(weights())
def test_nm_mask_properties(case):
    p, w, _ = case
    mask = nm_mask(w, p)
    groups = mask.reshape(w.shape[0], -1, p.m)
    assert (groups.sum(-1) == p.n).all()
    a = w.abs().reshape(w.shape[0], -1, p.m)
    assert (
        torch.where(groups, a, torch.inf).amin(-1) >= torch.where(groups, -torch.inf, a).amax(-1)
    ).all()
    assert torch.equal(mask, nm_mask(w.clone(), p))  # deterministic
    assert torch.equal(mask, nm_mask(-w, p))  # magnitudes only


@settings(max_examples=40, deadline=None)
@given(weights())
def test_backward_mask_properties(case):
    p, w, g = case
    mf = nm_mask(w, p)
    perm = torch.randperm(w.shape[0], generator=g)
    mb = bimask_backward_mask(w, mf, p, perm)
    assert not (mb & ~mf).any()
    counts = mb[perm].reshape(-1, p.m, w.shape[1]).sum(1)
    assert (counts <= p.n).all()
    assert int(mb.sum()) == permutation_score(mf, p, perm)


@settings(max_examples=25, deadline=None)
@given(weights(), st.booleans())
def test_transposable_properties(case, exact):
    p, w, _ = case
    mask = transposable_mask(w, p, exact=exact)
    blocks = to_blocks(mask, p.m)
    assert (blocks.sum(1) <= p.n).all() and (blocks.sum(2) <= p.n).all()
    if exact:
        assert (blocks.sum(1) == p.n).all() and (blocks.sum(2) == p.n).all()
