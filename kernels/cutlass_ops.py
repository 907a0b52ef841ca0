"""The CUTLASS sm90 sparse family on torch CUDA tensors: compress A with CUTLASS's own device
compressor, then D = A_sparse . B^T (B: N x K, K contiguous; D: M x N row-major), on torch's
current stream. Every operand check runs on tensor metadata before anything is built or launched
(``kernels.validate``'s helpers), then the library's own check (no CUDA) before the launch.

The compressed operand belongs to a build's metadata layout, which depends on the tile's K
(CUTLASS reorders the metadata in blocks of min(TILE_K, 128) columns) and the dtype: the GEMM
refuses an operand compressed for another layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.cutlass_lib import RunOptions, library
from kernels.space import Config
from kernels.validate import check_devices, check_layout, check_sizes, half_dtype

_WORKSPACE: dict[tuple, torch.Tensor] = {}  # (device, bytes) -> a reusable stream-K workspace


@dataclass(frozen=True)
class CutlassSparse:
    """A compressed for CUTLASS's sm90 sparse GEMM: values (M x K/2) and metadata bytes."""

    values: torch.Tensor
    meta: torch.Tensor  # uint8, CUTLASS's reordered E layout
    rows: int
    k: int
    dtype: str
    meta_k: int  # the metadata layout's K block: min(TILE_K, 128)


def meta_block(config: Config) -> int:
    """The metadata layout's K block of a config (what a compressed operand must match)."""
    return min(int(config["TILE_K"]), 128)


def _check_k(k: int) -> None:
    if k % 16:
        raise ValueError(
            f"K={k} is not a multiple of 16: CUTLASS's sparse GEMM reads A's compressed rows as "
            "whole 16-byte chunks; pad K"
        )


def _violations(a: torch.Tensor) -> int:
    """How many aligned groups of 4 along K keep more than 2 nonzeros (a device read)."""
    groups = (a.reshape(a.shape[0], -1, 4) != 0).sum(-1)
    return int((groups > 2).sum())


def cutlass_compress(
    a: torch.Tensor, config: Config, *, check_pattern: bool = True
) -> CutlassSparse:
    """Compress a masked M x K matrix (at most 2 nonzeros in every aligned 4 along K) for the
    build of ``config``. ``check_pattern`` reads A once to refuse a wrong mask (CUTLASS's
    compressor keeps nonzeros and has no room for a third); the per-step path skips it."""
    check_devices({"a": a})
    if a.dim() != 2:
        raise ValueError(f"cutlass_compress takes a 2-D (M x K) matrix, got {tuple(a.shape)}")
    dtype = half_dtype("a", a)
    check_layout("a", a)
    m, k = a.shape
    _check_k(k)
    check_sizes(M=m, K=k)
    if check_pattern and (bad := _violations(a)):
        raise ValueError(
            f"A keeps more than 2 nonzeros in {bad} aligned groups of 4 along K; CUTLASS's "
            "2:4 format cannot hold it: apply an N:M mask with at most 2 of every aligned 4"
        )
    lib = library(config, dtype)
    n_values, n_meta = lib.compressed_sizes(m, k)
    values = torch.empty(n_values, dtype=a.dtype, device=a.device).view(m, n_values // m)
    meta = torch.empty(n_meta, dtype=torch.uint8, device=a.device)
    lib.compress_check(a.data_ptr(), m, k, a.stride(0), values.data_ptr(), meta.data_ptr())
    lib.compress(
        a.data_ptr(), m, k, a.stride(0), values.data_ptr(), meta.data_ptr(), _stream(a.device)
    )
    return CutlassSparse(values, meta, m, k, dtype, meta_block(config))


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


def _workspace(device: torch.device, nbytes: int) -> torch.Tensor | None:
    if nbytes == 0:
        return None
    key = (str(device), nbytes)
    if key not in _WORKSPACE:
        _WORKSPACE[key] = torch.empty(nbytes, dtype=torch.uint8, device=device)
    return _WORKSPACE[key]


def cutlass_gemm(
    a: CutlassSparse,
    b: torch.Tensor,
    config: Config,
    *,
    out: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """D = A_sparse . B^T with the build of ``config`` (a full config of the registry's space,
    its run-time tunables included); writes ``out`` when given."""
    if not isinstance(a, CutlassSparse):
        raise TypeError(f"A must be a CutlassSparse (cutlass_compress), got {type(a).__name__}")
    named = {"a.values": a.values, "a.meta": a.meta, "b": b}
    if out is not None:
        named["out"] = out
    device = check_devices(named)
    if b.dim() != 2 or b.shape[1] != a.k:
        raise ValueError(f"B must be N x K with K={a.k}, got {tuple(b.shape)}")
    dtype = half_dtype("b", b)
    if dtype != a.dtype:
        raise TypeError(f"A was compressed as {a.dtype}, B is {dtype}")
    if a.meta_k != meta_block(config):
        raise ValueError(
            f"A was compressed for a metadata block of {a.meta_k} columns, this config's "
            f"TILE_K={config['TILE_K']} reads {meta_block(config)}: compress with this config"
        )
    if b.stride(1) != 1:
        raise ValueError(
            f"B's K axis must be contiguous (strides {b.stride()}); pass .contiguous()"
        )
    if out_dtype not in (None, torch.float32, b.dtype):
        raise TypeError(f"out_dtype must be None, torch.float32 or {b.dtype}, not {out_dtype}")
    want = out_dtype or b.dtype
    m, n = a.rows, b.shape[0]
    if out is None:
        out = torch.empty(m, n, dtype=want, device=device)
    elif out.dtype != want or tuple(out.shape) != (m, n) or out.stride(1) != 1:
        raise ValueError(
            f"out must be a row-major {m} x {n} {want} tensor, got {tuple(out.shape)} "
            f"{out.dtype} strides {out.stride()}"
        )
    run = RunOptions.of(config)
    lib = library(config, dtype, out_f32=want == torch.float32)
    ptrs = (a.values.data_ptr(), a.meta.data_ptr(), b.data_ptr(), out.data_ptr())
    lib.check(*ptrs, m, n, a.k, b.stride(0), out.stride(0), run)
    nbytes = lib.workspace_size(m, n, a.k, b.stride(0), out.stride(0), run)
    ws = _workspace(device, nbytes)
    lib.gemm(
        *ptrs,
        m,
        n,
        a.k,
        b.stride(0),
        out.stride(0),
        run,
        ws.data_ptr() if ws is not None else None,
        nbytes,
        _stream(device),
    )
    return out
