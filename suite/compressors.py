"""Per-step compression costs: what each sparse GEMM backend needs done to a fresh mask.

Masks change every training step, so the compressed operand of a sparse backend is rebuilt every
step: W*Mf for the forward GEMM, (W*Mb)^T with its K axis in pi order for the bwd-data GEMM. Each
compressor names the sparse backends whose operand it builds; the sweep times it on the layer's
weight and the training-step view adds it to the step of a method that runs those backends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from suite.problem import pattern_fits_hardware


@dataclass(frozen=True)
class Compressor:
    name: str  # the compress_backend column of its rows
    device: str
    backends: tuple[str, ...]  # the sparse GEMM backends that read what it produces
    available: Callable[[], str | None]  # None, or why it cannot run here
    prepare: Callable[[torch.Tensor, str], Callable[[], object]]  # (masked A, pattern) -> call
    supports: Callable[[str], str | None] = lambda pattern: None
    fused: Callable[[torch.Tensor, str], Callable[[], object]] | None = None  # mask + pack
    dtype: str = "bfloat16"  # what it compresses


def _hardware_pattern(pattern: str) -> str | None:
    if pattern_fits_hardware(pattern):
        return None
    return f"{pattern} has no sparse tensor-core format"


def _cuda() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA device"


def _ours_available() -> str | None:
    from kernels.registry import VARIANTS

    return VARIANTS["nm_compress_masked"].is_available()


def _ours(a: torch.Tensor, pattern: str):
    from kernels.ops import compress_gpu

    a = a.to(torch.bfloat16).contiguous()
    return lambda: compress_gpu(a, pattern, masked=True)


def _ours_fused(w: torch.Tensor, pattern: str):
    from kernels.ops import compress_gpu

    w = w.to(torch.bfloat16).contiguous()
    return lambda: compress_gpu(w, pattern)


def _cusparselt(a: torch.Tensor, pattern: str):
    a = a.to(torch.bfloat16).contiguous()
    return lambda: torch._cslt_compress(a)


def _cutlass(a: torch.Tensor, pattern: str):
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    a = a.to(torch.bfloat16).contiguous()

    def run():
        SparseSemiStructuredTensor._FORCE_CUTLASS = True
        try:
            return to_sparse_semi_structured(a)
        finally:
            SparseSemiStructuredTensor._FORCE_CUTLASS = False

    return run


def _cutlass_sm90_available() -> str | None:
    from kernels.registry import VARIANTS

    return VARIANTS["cutlass_sm90_sparse"].is_available()


def _cutlass_sm90(a: torch.Tensor, pattern: str):
    """CUTLASS's own device compressor, as the default config's build lays A out (the layout
    depends on TILE_K only; the cost does not)."""
    from kernels.cutlass_ops import cutlass_compress
    from kernels.registry import VARIANTS

    a, config = a.to(torch.bfloat16).contiguous(), VARIANTS["cutlass_sm90_sparse"].default()
    return lambda: cutlass_compress(a, config, check_pattern=False)


def _csr(a: torch.Tensor, pattern: str):
    a = a.cpu()
    return a.to_sparse_csr


COMPRESSORS: dict[str, Compressor] = {
    c.name: c
    for c in [
        Compressor("torch_csr", "cpu", ("torch_csr",), lambda: None, _csr, dtype="float32"),
        Compressor(
            "bimask_gpu",
            "cuda",
            ("bimask_sparse", "bimask_sparse_sm90"),
            _ours_available,
            _ours,
            _hardware_pattern,
            fused=_ours_fused,
        ),
        Compressor("cusparselt", "cuda", ("cusparselt",), _cuda, _cusparselt, _hardware_pattern),
        Compressor("cutlass", "cuda", ("cutlass",), _cuda, _cutlass, _hardware_pattern),
        Compressor(
            "cutlass_sm90",
            "cuda",
            ("cutlass_sm90",),
            _cutlass_sm90_available,
            _cutlass_sm90,
            _hardware_pattern,
        ),
    ]
}


def compressors_for(backends: tuple[str, ...], device: str) -> list[Compressor]:
    """The compressors a sweep over ``backends`` on ``device`` needs."""
    return [
        c for c in COMPRESSORS.values() if c.device == device and set(c.backends) & set(backends)
    ]


def compressor_of(backend: str) -> str | None:
    """The compress_backend whose rows price the per-step compression of a sparse backend."""
    for c in COMPRESSORS.values():
        if backend in c.backends:
            return c.name
    return None
