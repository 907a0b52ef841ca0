"""Make a model's own layer objects sparse in place, and dense again.

A layer is made sparse by switching its class to a sparse subclass of the class it has
(``module.__class__``), never by building a new module: its Parameters (so an optimizer made
before ``sparsify`` and tied weights), ``requires_grad``, hooks and other attributes stay as
they were. The mask buffers are added to the same object, so the state_dict keys of a plain
``nn.Linear`` / ``nn.Conv2d`` are those of :class:`SparseLinear` / :class:`SparseConv2d`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from bimask.autograd import sparse_op
from bimask.backends import layer_ops
from bimask.layers import SparseConv2d, SparseLinear, SparseMixin

SPARSE_BUFFERS = ("perm", "step", "mask_forward", "mask_backward", "masks_ready")
SPARSE_ATTRS = (
    "pattern",
    "method",
    "permutation",
    "perm_every",
    "decay",
    "conv_order",
    "tmask_exact",
    "seed",
    "permutation_options",
    "backend",
    "tuned",
    "_spec",
    "mask_time_s",
    "backward_as_forward",
    "perm_realisation",
    "perm_is_identity",
)
_CLASSES: dict[type, type] = {}


class MaskedWeightSTE(torch.autograd.Function):
    """W*Mf in the forward; the weight gradient is dense (straight-through) plus the SR-STE
    decay term, as in :mod:`bimask.autograd`. Used where the layer runs its own GEMM."""

    @staticmethod
    def forward(ctx, weight, mask_forward, decay: float):
        ctx.save_for_backward(weight, mask_forward)
        ctx.decay = decay
        return weight * mask_forward

    @staticmethod
    def backward(ctx, grad):
        weight, mask_forward = ctx.saved_tensors
        if ctx.decay:
            grad = grad + ctx.decay * (~mask_forward) * weight
        return grad, None, None


@contextmanager
def substituted(module: nn.Module, name: str, value: torch.Tensor):
    """``module.<name>`` reads ``value`` inside the block; the Parameter is put back after."""
    param = module._parameters[name]
    module._parameters[name] = value
    try:
        yield
    finally:
        module._parameters[name] = param


def _forward_mask_only(self, *args, **kwargs):
    if self._spec.masks is None:
        return self._dense_class.forward(self, *args, **kwargs)
    mf, _ = self.step_masks()
    with substituted(self, "weight", MaskedWeightSTE.apply(self.weight, mf, self.decay)):
        return self._dense_class.forward(self, *args, **kwargs)


def own_forward(cls: type) -> bool:
    """True when ``cls`` (a Linear/Conv2d subclass) defines a forward of its own."""
    base = nn.Linear if issubclass(cls, nn.Linear) else nn.Conv2d
    return cls.forward is not base.forward


def sparse_class(cls: type) -> type:
    """The sparse class a layer of class ``cls`` is switched to (one per class, cached).

    A subclass that keeps the stock forward gets the Bi-Mask GEMMs; one with its own forward
    keeps it, reading ``W*Mf`` as its weight (forward mask, dense backward of that GEMM)."""
    if cls in (nn.Linear, nn.Conv2d):
        return SparseLinear if cls is nn.Linear else SparseConv2d
    if cls not in _CLASSES:
        base = SparseLinear if issubclass(cls, nn.Linear) else SparseConv2d
        body: dict = {"_dense_class": cls, "__module__": __name__}
        if own_forward(cls):
            body["forward"] = _forward_mask_only
        _CLASSES[cls] = type(f"Sparse{cls.__name__}", (base, cls), body)
    return _CLASSES[cls]


class TransposedLinearMixin(SparseMixin):
    """A transposed Linear (``y = x @ W + b``, ``W`` in x out: Hugging Face's ``Conv1D``): the
    GEMM view is ``W.t()``, so the masks (out x in) are those of the equivalent Linear."""

    def _masked_weight(self) -> torch.Tensor:
        return self.weight.t()

    def _ops(self):
        return layer_ops("linear", self.backend, layer=self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._spec.masks is None:
            return self._dense_class.forward(self, x)
        mf, mb = self.step_masks()
        return sparse_op(x, self.weight.t(), self.bias, mf, mb, self.decay, self._ops())


def transposed_class(cls: type) -> type:
    if cls not in _CLASSES:
        body = {"_dense_class": cls, "__module__": __name__}
        _CLASSES[cls] = type(f"Sparse{cls.__name__}", (TransposedLinearMixin, cls), body)
    return _CLASSES[cls]


def make_sparse(module: nn.Module, transposed: bool = False, **settings) -> None:
    """Switch ``module`` (Linear/Conv2d or a subclass, or a transposed Linear) to its sparse
    class, in place."""
    dense = type(module)
    module.__class__ = transposed_class(dense) if transposed else sparse_class(dense)
    try:
        module._setup_sparsity(**settings)
    except Exception:
        strip_sparsity(module)
        module.__class__ = dense
        raise


def strip_sparsity(module: nn.Module) -> None:
    """Remove the mask buffers and settings :meth:`SparseMixin._setup_sparsity` added."""
    for name in SPARSE_BUFFERS:
        module._buffers.pop(name, None)
    for name in SPARSE_ATTRS:
        module.__dict__.pop(name, None)


@torch.no_grad()
def bake_masks(layer: SparseMixin) -> None:
    """Multiply the layer's weight by its forward mask, in place (same Parameter)."""
    if layer._spec.masks is None:
        return
    if not bool(layer.masks_ready):
        layer.compute_masks(refresh=False)
    weight = layer._masked_weight()
    weight.mul_(layer.mask_forward.to(weight.dtype))


def make_dense(module: SparseMixin, apply_masks: bool) -> None:
    """Back to the module's dense class; ``apply_masks`` keeps the function it computed."""
    if apply_masks:
        bake_masks(module)
    strip_sparsity(module)
    module.__class__ = module._dense_class
