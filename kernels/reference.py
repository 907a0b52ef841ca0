"""The reference beside the GEMM kernels: what ``kernels.ops.nm_gemm`` must compute, on any
device, from the same operands (the compressed format through ``decompress``)."""

from __future__ import annotations

import torch

from kernels.format import Compressed, decompress


def nm_gemm_reference(
    a: Compressed | torch.Tensor,
    b: torch.Tensor,
    *,
    perm: torch.Tensor | None = None,
    transpose_out: bool = False,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """C = A . B[:, perm]^T (C^T with ``transpose_out``), accumulated in float32 like the kernels;
    ``out_dtype`` defaults to A's element type, as the kernels' output does."""
    dense = decompress(a) if isinstance(a, Compressed) else a
    elem = dense.dtype
    if b.shape[1] != dense.shape[1]:
        raise ValueError(f"B has K={b.shape[1]}, A has K={dense.shape[1]}")
    cols = b if perm is None else b.index_select(1, perm.to(device=b.device, dtype=torch.long))
    c = dense.to(device=b.device, dtype=torch.float32) @ cols.float().t()
    c = c.t() if transpose_out else c
    return c.to(out_dtype or elem).contiguous()
