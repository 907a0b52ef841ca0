"""One autograd function for every mask method.

forward:       Y  = op(X, W * Mf) (+ bias)
input grad:    dX = op_input_grad(dY, W * Mb)      (Mb = Mf for srste and tmask)
weight grad:   dW = op_weight_grad(X, dY) + decay * (1 - Mf) * W
The weight gradient is dense (straight-through) so pruned weights can grow back; the SR-STE
term is added once per call, not per sample, so it does not scale with the batch size.
The dense method (no masks) runs the same three GEMMs through :func:`dense_op`, so a profile
(bimask.profile) breaks its step into the same gemm_fwd / gemm_dx / gemm_dw sections.
"""

from __future__ import annotations

import torch

from bimask.backends import LayerOps
from bimask.profile import section


class SparseWeightFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mask_forward, mask_backward, decay: float, ops: LayerOps):
        ctx.save_for_backward(x, weight, mask_forward, mask_backward)
        ctx.decay, ctx.ops, ctx.has_bias = decay, ops, bias is not None
        with section("gemm_fwd"):
            return ops.forward(x, weight * mask_forward, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mask_forward, mask_backward = ctx.saved_tensors
        ops = ctx.ops
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            with section("gemm_dx"):
                dx = ops.input_grad(dy, weight * mask_backward, x.shape)
        if ctx.needs_input_grad[1]:
            with section("gemm_dw"):
                dw = ops.weight_grad(x, dy, weight.shape)
                if ctx.decay:
                    dw = dw + ctx.decay * (~mask_forward) * weight
        if ctx.has_bias and ctx.needs_input_grad[2]:
            with section("gemm_dw"):
                db = ops.bias_grad(dy)
        return dx, dw, db, None, None, None, None


class DenseWeightFunction(torch.autograd.Function):
    """Y = op(X, W) (+ bias) with the backward's GEMMs on the backend, each in its section."""

    @staticmethod
    def forward(ctx, x, weight, bias, ops: LayerOps):
        ctx.save_for_backward(x, weight)
        ctx.ops, ctx.has_bias = ops, bias is not None
        with section("gemm_fwd"):
            return ops.forward(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            with section("gemm_dx"):
                dx = ctx.ops.input_grad(dy, weight, x.shape)
        if ctx.needs_input_grad[1]:
            with section("gemm_dw"):
                dw = ctx.ops.weight_grad(x, dy, weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            with section("gemm_dw"):
                db = ctx.ops.bias_grad(dy)
        return dx, dw, db, None


def dense_op(x, weight, bias, ops: LayerOps):
    """Apply :class:`DenseWeightFunction` (the dense method: no masks)."""
    return DenseWeightFunction.apply(x, weight, bias, ops)


def sparse_op(x, weight, bias, mask_forward, mask_backward, decay: float, ops: LayerOps):
    """Apply :class:`SparseWeightFunction` (masks are bool tensors of the weight's shape)."""
    return SparseWeightFunction.apply(x, weight, bias, mask_forward, mask_backward, decay, ops)
