"""The custom backward, checked against autograd on the function it is defined to be.

Each method's input gradient is the true gradient of op(X, W*Mb); its weight gradient is the true
gradient of op(X, W) (dense, straight-through) plus decay * (1 - Mf) * W. gradcheck verifies the
first two in float64; the decay term and the method-specific masks are checked exactly.
"""

import pytest
import torch
import torch.nn.functional as F

from bimask import METHODS, SparseConv2d, SparseLinear
from bimask.autograd import sparse_op
from bimask.backends import layer_ops

SPARSE = [m for m in METHODS if m != "dense"]


def _linear_case(method, rng):
    layer = SparseLinear(16, 8, method=method, pattern="2:4", permutation="greedy").double()
    mf, mb = layer.compute_masks(refresh=True)
    x = torch.randn(3, 16, dtype=torch.float64, generator=rng, requires_grad=True)
    return layer, x, mf.clone(), mb.clone()


@pytest.mark.parametrize("method", SPARSE)
def test_gradcheck_linear(method, rng):
    layer, x, mf, mb = _linear_case(method, rng)
    ops = layer_ops("linear")
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    # input gradient: exact gradient of the op run with the backward mask
    assert torch.autograd.gradcheck(lambda x_: sparse_op(x_, w, b, mb, mb, 0.0, ops), (x,))
    # weight and bias gradient: exact gradient of the dense op (straight-through)
    ones = torch.ones_like(mf)
    assert torch.autograd.gradcheck(lambda w_, b_: sparse_op(x, w_, b_, ones, mb, 0.0, ops), (w, b))


@pytest.mark.parametrize("method", SPARSE)
def test_gradcheck_conv(method, rng):
    layer = SparseConv2d(8, 8, 3, stride=2, padding=1, method=method, permutation="greedy")
    layer = layer.double()
    mf, mb = layer.compute_masks(refresh=True)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64, generator=rng, requires_grad=True)
    ops = layer._ops()
    w = layer.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x_: sparse_op(x_, w, None, mb, mb, 0.0, ops), (x,))
    ones = torch.ones_like(mf)
    assert torch.autograd.gradcheck(lambda w_: sparse_op(x, w_, None, ones, mb, 0.0, ops), (w,))


def test_srste_input_grad_equals_autograd_through_masked_weight(rng):
    layer, x, mf, _ = _linear_case("srste", rng)
    layer.decay = 0.0
    y = layer(x)
    dy = torch.randn(y.shape, dtype=y.dtype, generator=rng)
    (dx,) = torch.autograd.grad(y, x, dy)
    x2 = x.detach().requires_grad_(True)
    y2 = F.linear(x2, layer.weight.detach() * layer.mask_forward, layer.bias.detach())
    (dx2,) = torch.autograd.grad(y2, x2, dy)
    assert torch.equal(y, y2) and torch.allclose(dx, dx2, rtol=0, atol=1e-12)


def test_bimask_grads_exactly(rng):
    layer = SparseLinear(32, 16, method="bimask", permutation="greedy", decay=3e-3).double()
    x = torch.randn(5, 32, dtype=torch.float64, generator=rng, requires_grad=True)
    y = layer(x)
    mf, mb = layer.mask_forward, layer.mask_backward
    assert (mb & ~mf).sum() == 0 and mb.sum() < mf.sum()  # a strict subset on random weights
    dy = torch.randn(y.shape, dtype=y.dtype, generator=rng)
    y.backward(dy)
    w = layer.weight.detach()
    assert torch.allclose(x.grad, dy @ (w * mb), rtol=0, atol=1e-12)
    expected_dw = dy.t() @ x.detach() + 3e-3 * (~mf) * w
    assert torch.allclose(layer.weight.grad, expected_dw, rtol=0, atol=1e-12)
    assert torch.allclose(layer.bias.grad, dy.sum(0), rtol=0, atol=1e-12)


def test_decay_term_is_exact_and_independent_of_batch_size(rng):
    layer = SparseLinear(16, 8, method="srste", decay=0.5).double()
    for batch in (1, 64):
        layer.zero_grad()
        x = torch.zeros(batch, 16, dtype=torch.float64)  # zero data: only the decay term remains
        layer(x).sum().backward()
        w = layer.weight.detach()
        assert torch.equal(layer.weight.grad, 0.5 * (~layer.mask_forward) * w)


def test_dense_method_is_plain_linear(rng):
    layer = SparseLinear(16, 8, method="dense")
    x = torch.randn(4, 16, generator=rng)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert not hasattr(layer, "mask_forward")


def test_tmask_uses_one_mask_for_both_passes(rng):
    layer = SparseLinear(16, 8, method="tmask", pattern="2:4")
    layer(torch.randn(2, 16, generator=rng))
    assert torch.equal(layer.mask_forward, layer.mask_backward)
    blocks = layer.mask_forward.reshape(2, 4, 4, 4).permute(0, 2, 1, 3)
    assert (blocks.sum(-1) == 2).all() and (blocks.sum(-2) == 2).all()
