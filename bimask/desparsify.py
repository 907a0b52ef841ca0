"""Turn a sparsified model back into a plain dense one, in place."""

from __future__ import annotations

from torch import nn

from bimask.attention import ProjectionMask, make_dense_attention, restore_fused_encoder
from bimask.layers import SparseMixin
from bimask.swap import make_dense


def desparsify(model: nn.Module, apply_masks: bool = False) -> list[str]:
    """Turn every sparse layer of ``model`` back into its dense class, in place (same objects
    and Parameters, mask buffers removed). ``apply_masks=False`` gives the dense function of
    the learned weights; ``True`` first multiplies each weight by its forward mask, so the
    dense model computes what the sparse one did. Returns the names of the layers changed."""
    changed = []
    for name, m in list(model.named_modules()):
        if hasattr(type(m), "_dense_class") and isinstance(m, nn.MultiheadAttention):
            make_dense_attention(m, apply_masks)
            changed.append(name)
    for name, m in list(model.named_modules()):
        if isinstance(m, SparseMixin) and not isinstance(m, ProjectionMask):
            make_dense(m, apply_masks)
            changed.append(name)
        restore_fused_encoder(m)
    return changed
