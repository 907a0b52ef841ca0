"""The ``cutlass_sm90`` backend: SparseLinear's sparse GEMMs on this project's CUTLASS 3.x sm90
builds (TMA + wgmma.sp, warp-specialised; ``kernels/cuda/cutlass_sm90_sparse.cu``), Hopper only.

The GEMMs, the gather of pi, the dense fallbacks and the per-layer cache of compressed operands
are the library backends' (:mod:`bimask.backends.compressed`); here is what is CUTLASS's:

- A is compressed by CUTLASS's own device compressor into the metadata layout of the config's
  build (it depends on min(TILE_K, 128)), so a compressed operand is cached per layout too;
- the GEMM writes D = A . B^T row-major (m x tokens): the layer's tokens x m result is its
  transposed view (a copy where the next op needs it contiguous); tokens are padded to a
  multiple of 8 (16-byte output rows);
- configs: the family's default (cooperative 128x128x64, TMA epilogue), or a sweep's winner of
  suite backend ``cutlass_sm90`` from ``layer.tuned`` (checked against the family's space).

The first GEMM of each config builds its library (minutes of nvcc) unless a kernel cache built
ahead of time holds it (``python -m kernels build --for-device H100 --out DIR``).
"""

from __future__ import annotations

import torch

from bimask.backends.compressed import CompressedLinearOps, library_linear, pad_tokens

VARIANT = "cutlass_sm90_sparse"
LIBRARY = "CUTLASS sm90"

_ALLOW_CPU = False  # tests only: let CPU tensors reach the (swapped-in) kernels.cutlass_ops


def device_reason(t: torch.Tensor) -> str | None:
    """Why this tensor's device cannot run the CUTLASS sm90 family; None when it can."""
    if t.device.type != "cuda":
        if _ALLOW_CPU:
            return None
        return "the cutlass_sm90 backend runs on CUDA tensors; use backend='torch' on the CPU"
    cc = torch.cuda.get_device_capability(t.device)
    if cc != (9, 0):
        return (
            f"the cutlass_sm90 backend runs on compute capability 9.0 (H100, H200, GH200), "
            f"this GPU is {cc[0]}.{cc[1]}: use backend='kernels' or backend='cusparselt'"
        )
    from kernels.registry import VARIANTS

    if (why := VARIANTS[VARIANT].is_available()) is not None:
        return f"the cutlass_sm90 backend cannot run here: {why}"
    return None


class CutlassLinearOps(CompressedLinearOps):
    """``LayerOps`` for ``linear`` on the CUTLASS sm90 sparse family (tile, cluster, schedule,
    raster tuned)."""

    NAME = "cutlass_sm90"
    LIBRARY = LIBRARY

    def device_reason(self, t):
        return device_reason(t)

    def default_config(self):
        from kernels.registry import VARIANTS

        return VARIANTS[VARIANT].default()

    def read_config(self, config):
        from kernels.registry import VARIANTS

        params = {k: v for k, v in config.items() if k not in ("perm_realisation", "family")}
        return VARIANTS[VARIANT].space().checked(params, VARIANT)

    def layout_key(self, config):
        from kernels.cutlass_ops import meta_block

        return meta_block(config)

    def compress(self, a, config):
        from kernels import cutlass_ops

        # the masks are N:M by construction: no host read of A to check them each step
        return cutlass_ops.cutlass_compress(a, config, check_pattern=False)

    def mm(self, packed, b2d, config):
        """``b2d @ A^T`` (tokens x m): CUTLASS's m x tokens result, transposed (a view)."""
        from kernels import cutlass_ops

        b2d, tokens = pad_tokens(b2d)
        out = cutlass_ops.cutlass_gemm(packed, b2d, config)
        return out.t()[:tokens]


def cutlass_linear(layer) -> CutlassLinearOps:
    """The CUTLASS sm90 family for a SparseLinear (CUDA, compute capability 9.0; bfloat16 /
    float16 GEMMs, float32 results for float32 training). A pattern or shape it cannot run
    fails here, at construction."""
    return library_linear(CutlassLinearOps, layer)


__all__ = ["CutlassLinearOps", "cutlass_linear", "device_reason"]
