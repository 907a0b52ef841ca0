"""Device-side operations on torch CUDA tensors: compress (GPU) and the N:M / dense GEMMs.

Shapes that are not tile multiples are handled by zero-filled predicated loads and bounded
stores in the kernel; K must be a multiple of 8 for the dense B operand (16-byte rows), which
the launcher pads when it is not.
"""

from __future__ import annotations

import torch

from kernels import device as kdevice
from kernels.aot import gemm_extra
from kernels.format import TILE, Compressed, check_sparse_pattern
from kernels.launch import LAUNCHERS, arch_of, gemm_launch
from kernels.registry import VARIANTS
from kernels.space import Config
from kernels.validate import check_compress_input, check_error_flag, gemm_plan


def _pad_k(b: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """``b`` itself when its rows are whole 16-byte chunks, else a zero-padded copy."""
    k = b.shape[1]
    if k % multiple == 0:  # contiguous (checked): the kernel takes leading dimension = K
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
    error: torch.Tensor | None = None,
) -> Compressed:
    """Compress on the GPU: top-N of each M of ``w`` (mask + pack), or, with ``masked``, the
    nonzeros of an already-masked matrix. Same bytes as ``kernels.format.compress``.

    A masked matrix keeping more than 2 of an aligned 4 is an error. ``error`` None: a fresh
    flag, read at once (a host sync) and raised as a ValueError. ``error`` given (one int32 on
    ``w``'s device): the kernel ORs the violation into it and nothing is read, so nothing waits
    for the GPU; the caller checks the flag when it chooses (``kernels.training``).
    """
    p = check_sparse_pattern(pattern)
    name = "nm_compress_masked" if masked else "nm_compress"
    dtype = check_compress_input(w, threads, VARIANTS[name])
    if error is not None:
        check_error_flag(error, w)
    if not masked and (16 % p.m):
        raise ValueError(f"GPU mask+pack handles groups that tile 16 columns; {p} does not")
    rows, k = w.shape
    if k % p.m:
        raise ValueError(f"K={k} is not a multiple of M={p.m}")
    rp, kp = -(-rows // TILE) * TILE, -(-k // TILE) * TILE
    vals = torch.empty(rp, kp // 2, dtype=w.dtype, device=w.device)
    meta = torch.empty(rp // 32, kp // 32, 32, dtype=torch.int32, device=w.device)
    if rp == 0 or kp == 0:  # nothing to pack: no launch (a zero-block grid is a launch error)
        return Compressed(vals, meta, rows, k, str(p))
    read_now = error is None
    if read_now:
        error = torch.zeros(1, dtype=torch.int32, device=w.device)
    extra = () if masked else (("GROUP_M", p.m), ("GROUP_N", p.n))
    run = LAUNCHERS[launcher]
    config = Config.of({"THREADS_PER_BLOCK": threads})
    fn = run.function(name, extra, config, dtype, arch_of(kdevice.device_info(w.device).cc))
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
    if read_now and masked and int(error.item()):  # the one host sync, without a flag
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
    b_layout: str = "nk",
) -> torch.Tensor:
    """C = A . B^T with A compressed (sparse path) or a dense tensor (dense kernel).

    ``perm`` (int32, length K) makes the kernel read B's columns as B[:, perm] (the permuted
    Bi-Mask backward); ``transpose_out`` writes C^T. Split-K configs accumulate in float32 (and
    need a float32 ``out``). ``family`` picks the kernel source: "sm80" (mma.sync / mma.sp, any
    sm_80+ GPU) or "sm90" (wgmma, Hopper only); both read the same compressed format. Every
    operand is checked first (``kernels.validate``): all on one CUDA device, contiguous, 16-byte
    aligned where the kernel reads vectors, of matching dtypes and shapes. An empty M or N gives
    an empty result, K = 0 a zero one, without a launch.

    ``b_layout="kn"`` takes B as K x N (N contiguous) with ``perm``: the gather then copies
    whole 16-byte chunks of B's row perm[k] (family sm80); "nk" (default) is B as N x K.
    """
    plan = gemm_plan(
        a,
        b,
        config,
        family=family,
        perm=perm,
        out=out,
        out_dtype=out_dtype,
        transpose_out=transpose_out,
        b_layout=b_layout,
    )
    m, n, k, variant = plan.m, plan.n, plan.k, plan.variant
    split = config["SPLIT_K"]
    c = (
        out
        if out is not None
        else torch.empty(plan.out_shape, dtype=plan.out_dtype, device=b.device)
    )
    if m == 0 or n == 0:
        return c
    if k == 0 or split > 1:
        c.zero_()  # split-K adds its partial sums into C
        if k == 0:
            return c
    extra = gemm_extra(config, plan.out_f32, transpose_out)
    run = LAUNCHERS[launcher]
    fn = run.function(variant.name, extra, config, plan.dtype, arch_of(plan.info.cc))
    b = _pad_k(b)  # kn: B's rows are N long, padded the same way (zeros past N are never read)
    geo = gemm_launch(variant, config, m, n)
    if isinstance(a, Compressed):
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
    if config.to_dict().get("TMA", 0):  # the copy engine's tensor maps, by value
        from kernels import tma

        spec_a, spec_b = tma.operand_maps(
            config, isinstance(a, Compressed), m, n, k, mp, kp, lda, b.shape[1]
        )
        args += [
            ("tmap", tma.encode(spec_a, a_ptr, plan.dtype)),
            ("tmap", tma.encode(spec_b, b.data_ptr(), plan.dtype)),
        ]
    run.launch(fn, geo.grid, geo.block, geo.smem, args, torch.cuda.current_stream().cuda_stream)
    return c


__all__ = ["compress_gpu", "nm_gemm"]
