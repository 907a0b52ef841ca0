"""The ``cusparselt`` backend: SparseLinear's sparse GEMMs on cuSPARSELt through PyTorch (CUDA).

The GEMMs, the gather of pi, the dense fallbacks and the per-layer cache of compressed operands
are the library backends' (:mod:`bimask.backends.compressed`); here is what is cuSPARSELt's:
the forward and input-gradient products are written transposed (``transpose_result=True``):
tokens x out, no copy; cuSPARSELt cannot gather inside, so pi is a separate ``index_select``.

The PyTorch ops, as declared in aten (native_functions.yaml, sparse/cuda/cuSPARSELtOps.cpp):

``torch._cslt_compress(input) -> Tensor``
    ``input``: 2-D, row-major contiguous, CUDA, float16/bfloat16 (also int8, float32 as tf32,
    float8_e4m3fn); it must already be 2:4 (at most 2 nonzeros in every aligned 4 along a row):
    cuSPARSELt packs it without checking. Returns an opaque buffer (values + metadata).
``torch._cslt_sparse_mm(compressed_A, dense_B, bias=None, alpha=None, out_dtype=None,
transpose_result=False, alg_id=0, split_k=1, split_k_mode=-1) -> Tensor``
    A (m x k, m read from the buffer's size) @ B (k x n). B is row-major, or the transpose of a
    contiguous n x k matrix (read with op(B) = transpose, no copy: what is passed here). Result
    m x n, or n x m with ``transpose_result=True``. ``out_dtype`` is only for 8-bit inputs:
    16-bit inputs give a 16-bit result (float32 accumulation), so float32 training casts after.
    ``bias``: length m, the result's dtype (not used: the bias is added in the layer's dtype).
    ``alg_id`` in ``0..torch.backends.cusparselt.get_max_alg_id()``, ``split_k >= 1``; the
    last argument is ``split_k_mode`` (int) in recent releases and ``split_k_one_kernel``
    (bool) in older ones, so it is never passed.
Shapes (torch.sparse's cuSPARSELt limits for 16-bit): the sparse operand's rows and columns
multiples of 16, so a layer's in and out features; the dense operand's multiples of 8, so the
tokens of a batch are padded to a multiple of 8 here (a copy, only when they are not).
"""

from __future__ import annotations

from functools import partial

import torch

from bimask.backends import compressed
from bimask.backends.compressed import CompressedLinearOps, library_linear, pad_tokens
from bimask.patterns import NMPattern

DEFAULT_CONFIG = {"alg_id": 0, "split_k": 1}
LIBRARY = "cuSPARSELt"

_ALLOW_CPU = False  # tests only: let CPU tensors reach the (swapped-in) ops


def pattern_reason(pattern: NMPattern) -> str | None:
    """Why cuSPARSELt cannot run ``pattern``; None when it can."""
    return compressed.pattern_reason(pattern, LIBRARY)


def shape_reason(out_features: int, in_features: int) -> str | None:
    """Why cuSPARSELt cannot run a Linear of this shape; None when it can."""
    return compressed.shape_reason(out_features, in_features, LIBRARY)


def device_reason(t: torch.Tensor) -> str | None:
    """Why this tensor's device cannot run cuSPARSELt; None when it can."""
    if t.device.type != "cuda":
        if _ALLOW_CPU:
            return None
        return "the cusparselt backend runs on CUDA tensors; use backend='torch' on the CPU"
    if not torch.backends.cusparselt.is_available():
        return "this PyTorch build has no cuSPARSELt; use backend='kernels' or backend='torch'"
    return None


layer_cache = partial(compressed.layer_cache, backend="cusparselt")


class CusparseltLinearOps(CompressedLinearOps):
    """``LayerOps`` for ``linear`` on cuSPARSELt (``alg_id`` and ``split_k`` tuned)."""

    NAME = "cusparselt"
    LIBRARY = LIBRARY

    def device_reason(self, t):
        return device_reason(t)

    def default_config(self):
        return DEFAULT_CONFIG

    def read_config(self, config):
        return {"alg_id": int(config.get("alg_id", 0)), "split_k": int(config.get("split_k", 1))}

    def compress(self, a, config):
        return torch._cslt_compress(a)

    def mm(self, packed, b2d, config):
        """``b2d @ A^T`` (tokens x m) on cuSPARSELt; tokens padded to a multiple of 8."""
        b2d, tokens = pad_tokens(b2d)
        out = torch._cslt_sparse_mm(
            packed,
            b2d.t(),  # the transpose of a contiguous tokens x k matrix: read as op(B)
            transpose_result=True,
            alg_id=config["alg_id"],
            split_k=config["split_k"],
        )
        return out[:tokens] if out.shape[0] != tokens else out


def cusparselt_linear(layer) -> CusparseltLinearOps:
    """cuSPARSELt for a SparseLinear (CUDA; bfloat16/float16 GEMMs, float32 results for float32
    training). A pattern or shape it cannot run fails here, at construction."""
    return library_linear(CusparseltLinearOps, layer)


__all__ = [
    "CusparseltLinearOps",
    "cusparselt_linear",
    "device_reason",
    "layer_cache",
    "pattern_reason",
    "shape_reason",
]
