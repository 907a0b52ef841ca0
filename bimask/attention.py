"""``nn.MultiheadAttention`` with N:M sparse projections and the Bi-Mask backward.

``nn.MultiheadAttention`` never calls its ``out_proj`` module and keeps its input projection as
bare Parameters, both read by ``F.multi_head_attention_forward``. A sparse attention module runs
that same function (so it computes what ``nn.MultiheadAttention`` computes, option for option)
under a torch-function mode that reroutes each of its projection GEMMs (``F.linear`` on
``in_proj_weight`` or a row slice of it, ``q/k/v_proj_weight``, ``out_proj.weight``) to
:func:`bimask.autograd.sparse_op`, so forward, dX and dW are the method's. The fused inference
paths of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` read the weights directly,
so they are turned off for a sparse attention module (the slow path computes the same function).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from bimask.autograd import sparse_op
from bimask.backends import TorchLinearOps, layer_ops
from bimask.layers import SparseMixin
from bimask.swap import bake_masks, make_dense, make_sparse, strip_sparsity

_redispatch = getattr(torch.overrides, "redispatch_function", None) or getattr(
    torch._C, "_skip_one_hop_torch_function", None
)
_FUSED = (torch._native_multi_head_attention, torch._transformer_encoder_layer_fwd)


class ProjectionMask(SparseMixin, nn.Module):
    """The mask state of one projection weight an attention module holds as a bare Parameter
    (``in_proj_weight``, ``q_proj_weight``, ...); a child of that module, so its buffers are in
    the state_dict as ``<attention>.<weight name>_mask.mask_forward`` and so on."""

    def __init__(self, weight: nn.Parameter, weight_name: str, **settings) -> None:
        nn.Module.__init__(self)
        self.weight_name = weight_name
        self.bind(weight)
        self._setup_sparsity(weight=weight, **settings)

    def bind(self, weight: torch.Tensor) -> None:
        self.__dict__["_bound"] = weight  # not registered: the Parameter stays its owner's

    def _masked_weight(self) -> torch.Tensor:
        return self.__dict__["_bound"]

    def _ops(self):
        return layer_ops("linear", self.backend, layer=self)

    def extra_repr(self) -> str:
        return f"{self.weight_name}, {self.sparsity_repr()}"


def projection_weights(mha: nn.MultiheadAttention) -> list[str]:
    """Names of the input-projection weights ``mha`` holds (packed or separate)."""
    if mha.in_proj_weight is not None:
        return ["in_proj_weight"]
    return ["q_proj_weight", "k_proj_weight", "v_proj_weight"]


class _ProjectionRouter(TorchFunctionMode):
    """Sends F.linear on a sparse projection weight (or a row slice of it) to sparse_op."""

    def __init__(self, routes: list[tuple[torch.Tensor, SparseMixin, tuple]]) -> None:
        super().__init__()
        self.routes = routes

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.multi_head_attention_forward:  # python-level: run its body under the mode
            if _redispatch is None:
                raise RuntimeError("bimask: sparse attention needs torch.overrides.redispatch")
            with self:
                return _redispatch(func, types, args, kwargs)
        if func in _FUSED:
            raise RuntimeError("bimask: a fused attention path would skip the N:M masks")
        if func is F.linear:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            for param, layer, masks in self.routes:
                rows = _rows_of(weight, param)
                if rows is None:
                    continue
                if masks is None:  # method "dense"
                    return func(*args, **kwargs)
                mf, mb = masks
                if rows == slice(None):
                    return sparse_op(x, param, bias, mf, mb, layer.decay, layer._ops())
                w, mf, mb = param[rows], mf[rows], mb[rows]  # q, k or v of a packed weight
                return sparse_op(x, w, bias, mf, mb, layer.decay, TorchLinearOps())
        return func(*args, **kwargs)


def _rows_of(weight: torch.Tensor, param: torch.Tensor) -> slice | None:
    """``slice(None)`` if ``weight`` is ``param``, the rows if it is a row block of it."""
    if weight is param:
        return slice(None)
    if weight._base is not param or weight.dim() != 2 or not weight.is_contiguous():
        return None
    offset = weight.storage_offset() - param.storage_offset()
    if weight.shape[1] != param.shape[1] or offset % param.shape[1]:
        return None
    start = offset // param.shape[1]
    return slice(start, start + weight.shape[0])


def _sparse_mha_forward(self, query, key, value, *args, **kwargs):
    routes = []
    for name in projection_weights(self):
        holder, param = self._modules.get(f"{name}_mask"), getattr(self, name)
        if holder is None:  # kept dense: runs as nn.MultiheadAttention runs it
            continue
        holder.bind(param)
        masks = holder.step_masks() if holder._spec.masks is not None else None
        routes.append((param, holder, masks))
    out = self.out_proj
    if isinstance(out, SparseMixin):
        masks = out.step_masks() if out._spec.masks is not None else None
        routes.append((out.weight, out, masks))
    with _ProjectionRouter(routes):  # has_torch_function is true inside: no fused path
        return self._dense_class.forward(self, query, key, value, *args, **kwargs)


_CLASSES: dict[type, type] = {}


def sparse_attention_class(cls: type) -> type:
    if cls not in _CLASSES:
        body = {"_dense_class": cls, "__module__": __name__, "forward": _sparse_mha_forward}
        _CLASSES[cls] = type(f"Sparse{cls.__name__}", (cls,), body)
    return _CLASSES[cls]


def make_sparse_attention(
    mha: nn.MultiheadAttention, sparse_names: list[str], out_sparse: bool, **settings
) -> None:
    """Make the named input projections (and ``out_proj`` if ``out_sparse``) of ``mha`` sparse;
    the others run dense through the same path."""
    dense = type(mha)
    try:
        for name in sparse_names:
            mha.add_module(f"{name}_mask", ProjectionMask(getattr(mha, name), name, **settings))
        if out_sparse:
            make_sparse(mha.out_proj, **settings)
    except Exception:
        for name in sparse_names:
            mha._modules.pop(f"{name}_mask", None)
        if isinstance(mha.out_proj, SparseMixin):
            strip_sparsity(mha.out_proj)
            mha.out_proj.__class__ = mha.out_proj._dense_class
        raise
    mha.__class__ = sparse_attention_class(dense)


def make_dense_attention(mha: nn.MultiheadAttention, apply_masks: bool) -> None:
    """Undo :func:`make_sparse_attention` (``apply_masks`` bakes W*Mf into the weights)."""
    for name in projection_weights(mha):
        holder = mha._modules.pop(f"{name}_mask", None)
        if holder is not None and apply_masks:
            holder.bind(getattr(mha, name))
            bake_masks(holder)
    if isinstance(mha.out_proj, SparseMixin):
        make_dense(mha.out_proj, apply_masks)
    mha.__class__ = mha._dense_class


# module class -> the instance attribute that only gates its fused inference path, and the
# value that turns it off (the slow path then runs the same function through the submodules)
FUSED_SWITCHES = {
    nn.TransformerEncoderLayer: ("activation_relu_or_gelu", 0),
    nn.TransformerEncoder: ("use_nested_tensor", False),  # nested tensors need the fused path
}


def disable_fused_encoder(module: nn.Module) -> None:
    """Turn off the fused inference path of an encoder (layer) with sparse parts: it reads the
    dense weights and would skip the masks."""
    for cls, (attr, off) in FUSED_SWITCHES.items():
        if isinstance(module, cls) and "_bimask_fused" not in module.__dict__:
            module.__dict__["_bimask_fused"] = getattr(module, attr, off)
            setattr(module, attr, off)


def restore_fused_encoder(module: nn.Module) -> None:
    for cls, (attr, _) in FUSED_SWITCHES.items():
        if isinstance(module, cls) and "_bimask_fused" in module.__dict__:
            setattr(module, attr, module.__dict__.pop("_bimask_fused"))
