"""Device-side operations on torch CUDA tensors: compress (GPU) and the N:M / dense GEMMs.

Shapes that are not tile multiples are handled by zero-filled predicated loads and bounded
stores in the kernel; K must be a multiple of 8 for the dense B operand (16-byte rows), which
the launcher pads when it is not.
"""

from __future__ import annotations

import torch

from kernels import device as kdevice
from kernels.format import TILE, Compressed, check_sparse_pattern
from kernels.launch import LAUNCHERS, arch_of, gemm_launch
from kernels.registry import GEMM_FAMILIES, VARIANTS
from kernels.space import Config

DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _dtype_name(t: torch.Tensor) -> str:
    if t.dtype not in DTYPE_NAMES:
        raise TypeError(f"the tensor-core kernels take bfloat16 or float16, got {t.dtype}")
    return DTYPE_NAMES[t.dtype]


def _arch(t: torch.Tensor) -> str:
    return arch_of(kdevice.device_info(t.device).cc)


def _pad_k(b: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    k = b.shape[1]
    if k % multiple == 0 and b.is_contiguous():  # the kernel takes leading dimension = K
        return b
    out = torch.zeros(b.shape[0], -(-k // multiple) * multiple, dtype=b.dtype, device=b.device)
    out[:, :k] = b
    return out


def compress_gpu(
    w: torch.Tensor,
    pattern: str,
    *,
    masked: bool = False,
    launcher: str = "cupy",
    threads: int = 256,
) -> Compressed:
    """Compress on the GPU: top-N of each M of ``w`` (mask + pack), or, with ``masked``, the
    nonzeros of an already-masked matrix. Same bytes as ``kernels.format.compress``."""
    p = check_sparse_pattern(pattern)
    if not masked and (16 % p.m):
        raise ValueError(f"GPU mask+pack handles groups that tile 16 columns; {p} does not")
    rows, k = w.shape
    if k % p.m:
        raise ValueError(f"K={k} is not a multiple of M={p.m}")
    rp, kp = -(-rows // TILE) * TILE, -(-k // TILE) * TILE
    vals = torch.empty(rp, kp // 2, dtype=w.dtype, device=w.device)
    meta = torch.empty(rp // 32, kp // 32, 32, dtype=torch.int32, device=w.device)
    error = torch.zeros(1, dtype=torch.int32, device=w.device)
    name = "nm_compress_masked" if masked else "nm_compress"
    extra = () if masked else (("GROUP_M", p.m), ("GROUP_N", p.n))
    run = LAUNCHERS[launcher]
    config = Config.of({"THREADS_PER_BLOCK": threads})
    fn = run.function(name, extra, config, _dtype_name(w), _arch(w))
    w = w.contiguous()
    total = rp * (kp // 16)
    args = [
        ("ptr", w.data_ptr()),
        ("i32", rows),
        ("i32", k),
        ("i32", k),
        ("i32", rp),
        ("i32", kp),
        ("ptr", vals.data_ptr()),
        ("ptr", meta.data_ptr()),
        ("ptr", error.data_ptr()),
    ]
    run.launch(
        fn,
        (-(-total // threads), 1, 1),
        (threads, 1, 1),
        0,
        args,
        torch.cuda.current_stream().cuda_stream,
    )
    if masked and int(error.item()):
        raise ValueError(f"the matrix keeps more than 2 of an aligned 4: not {p}")
    return Compressed(vals, meta, rows, k, str(p))


def nm_gemm(
    a: Compressed | torch.Tensor,
    b: torch.Tensor,
    config: Config,
    *,
    perm: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    transpose_out: bool = False,
    launcher: str = "cupy",
    out: torch.Tensor | None = None,
    family: str = "sm80",
) -> torch.Tensor:
    """C = A . B^T with A compressed (sparse path) or a dense tensor (dense kernel).

    ``perm`` (int32, length K) makes the kernel read B's columns as B[:, perm] (the permuted
    Bi-Mask backward); ``transpose_out`` writes C^T. Split-K configs accumulate in float32.
    ``family`` picks the kernel source: "sm80" (mma.sync / mma.sp, any sm_80+ GPU) or "sm90"
    (wgmma, Hopper only); both read the same compressed format.
    """
    if family not in GEMM_FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; choose one of {sorted(GEMM_FAMILIES)}")
    roles = GEMM_FAMILIES[family]
    sparse = isinstance(a, Compressed)
    if sparse:
        name = roles["gather"] if perm is not None else roles["sparse"]
        m, k = a.rows, a.k
        elem = a.values
    else:
        if perm is not None:
            raise ValueError("perm applies to the sparse kernel only")
        name, (m, k), elem = roles["dense"], a.shape, a
    variant = VARIANTS[name]
    info = kdevice.device_info(elem.device)
    if why := variant.runs_on(info.cc):
        raise ValueError(f"{why}; family='sm80' runs on any sm_80+ GPU")
    if not variant.space().allows(config.to_dict()):
        raise ValueError(f"{name}: config {config.to_json()} breaks a restriction")
    if (need := variant.smem(config.to_dict())) > info.smem_optin:
        raise ValueError(
            f"{name}: config {config.to_json()} needs {need} bytes of shared memory per block, "
            f"this device ({info}) allows {info.smem_optin}; pick one of "
            f"VARIANTS[{name!r}].space(smem_limit={info.smem_optin})"
        )
    if b.shape[1] != k:
        raise ValueError(f"B has K={b.shape[1]}, A has K={k}")
    dtype = _dtype_name(elem)
    if b.dtype != elem.dtype:
        raise TypeError(f"A is {elem.dtype} but B is {b.dtype}")
    split = config["SPLIT_K"]
    f32 = out_dtype == torch.float32 or split > 1
    extra = (("OUT_F32", int(f32)), ("TRANS_C", int(transpose_out)))  # split-K implies f32
    run = LAUNCHERS[launcher]
    fn = run.function(name, extra, config, dtype, arch_of(info.cc))
    n = b.shape[0]
    b = _pad_k(b)
    shape = (n, m) if transpose_out else (m, n)
    c = (
        out
        if out is not None
        else (torch.zeros if split > 1 else torch.empty)(
            shape, dtype=torch.float32 if f32 else elem.dtype, device=b.device
        )
    )
    if split > 1:
        c.zero_()
    geo = gemm_launch(variant, config, m, n)
    if sparse:
        mp, kp = a.padded_shape
        a_ptr, e_ptr, lda = a.values.data_ptr(), a.meta.data_ptr(), kp // 2
    else:
        a = _pad_k(a)
        mp, kp, lda = m, a.shape[1], a.shape[1]
        a_ptr, e_ptr = a.data_ptr(), a.data_ptr()
    p_ptr = perm.data_ptr() if perm is not None else b.data_ptr()
    args = [
        ("ptr", a_ptr),
        ("ptr", e_ptr),
        ("ptr", b.data_ptr()),
        ("ptr", p_ptr),
        ("ptr", c.data_ptr()),
        ("i32", m),
        ("i32", n),
        ("i32", k),
        ("i32", mp),
        ("i32", kp),
        ("i32", lda),
        ("i32", b.shape[1]),
        ("i32", c.shape[1]),
    ]
    run.launch(fn, geo.grid, geo.block, geo.smem, args, torch.cuda.current_stream().cuda_stream)
    return c


__all__ = ["compress_gpu", "nm_gemm"]
