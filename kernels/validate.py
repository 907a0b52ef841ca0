"""Operand checks of the public kernel entries, on tensor metadata only: device, dtype, shape,
contiguity, 16-byte alignment, index dtype. They run before anything is built or launched and
never read device memory (no host sync), so a CPU test exercises each of them.

What the kernels read with 16-byte vector loads (cp.async): the compressed values and metadata,
dense A and B. They do not check that a permutation's values lie in [0, K): that would need a
device read; ``perm`` must come from the layer's permutation (a permutation of ``range(K)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import device as kdevice
from kernels.format import TILE, Compressed
from kernels.registry import GEMM_FAMILIES, VARIANTS, KernelVariant
from kernels.space import Config

DEVICE_TYPE = "cuda"  # the kernels read device memory; CPU tests pretend with "cpu"
HALF = {torch.bfloat16: "bfloat16", torch.float16: "float16"}
INT32_MAX = 2**31 - 1  # the kernels take sizes as int


def _round_up(x: int, to: int) -> int:
    return -(-x // to) * to


def check_devices(named: dict[str, torch.Tensor]) -> torch.device:
    """The one CUDA device all ``named`` tensors are on, else a ValueError naming the stray."""
    where = {}
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if t.device.type != DEVICE_TYPE:
            hint = (
                " (kernels.compress returns CPU tensors: move values and meta with .cuda(), "
                "e.g. dataclasses.replace(c, values=c.values.cuda(), meta=c.meta.cuda()))"
                if name.startswith("a.")
                else ""
            )
            raise ValueError(
                f"{name} is on {t.device}, the kernels read {DEVICE_TYPE} memory; "
                f"move it with .cuda(){hint}"
            )
        where[name] = t.device
    if len(set(where.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in where.items())
        raise ValueError(f"operands on different devices ({listing}); put them on one device")
    return next(iter(where.values()))


def check_layout(name: str, t: torch.Tensor, *, aligned: bool = True) -> None:
    """Contiguous (the kernels take leading dimension = row length) and, for what they read
    with 16-byte vector loads, 16-byte aligned."""
    if not t.is_contiguous():
        raise ValueError(f"{name} is not contiguous (strides {t.stride()}); pass .contiguous()")
    if aligned and t.numel() and t.data_ptr() % 16:
        raise ValueError(
            f"{name} starts at address {t.data_ptr():#x}, not 16-byte aligned (a view at an "
            "offset into another tensor?); pass .clone()"
        )


def half_dtype(name: str, t: torch.Tensor, variant: KernelVariant | None = None) -> str:
    """The kernel dtype name of a bfloat16 / float16 tensor, else a TypeError."""
    allowed = variant.dtypes if variant is not None else tuple(HALF.values())
    if HALF.get(t.dtype) not in allowed:
        raise TypeError(f"{name} is {t.dtype}; the tensor-core kernels take {', '.join(allowed)}")
    return HALF[t.dtype]


def check_sizes(**sizes: int) -> None:
    for name, v in sizes.items():
        if v > INT32_MAX:
            raise ValueError(f"{name}={v} exceeds the kernels' 32-bit sizes; split the GEMM")


@dataclass(frozen=True)
class GemmPlan:
    """A validated GEMM: which variant, its sizes, and the output it writes."""

    variant: KernelVariant
    m: int
    n: int
    k: int
    dtype: str  # of A and B
    out_f32: bool
    out_shape: tuple[int, int]
    out_dtype: torch.dtype
    info: kdevice.DeviceInfo


def _check_compressed(a: Compressed, b: torch.Tensor) -> None:
    rp, kp = _round_up(a.rows, TILE), _round_up(a.k, TILE)
    if tuple(a.values.shape) != (rp, kp // 2):
        raise ValueError(
            f"compressed values have shape {tuple(a.values.shape)}, rows={a.rows} K={a.k} "
            f"need {(rp, kp // 2)}; build it with kernels.compress / compress_gpu"
        )
    if tuple(a.meta.shape) != (rp // TILE, kp // TILE, 32):
        raise ValueError(
            f"compressed metadata has shape {tuple(a.meta.shape)}, need "
            f"{(rp // TILE, kp // TILE, 32)}; build it with kernels.compress / compress_gpu"
        )
    if a.meta.dtype != torch.int32:
        raise TypeError(f"compressed metadata is {a.meta.dtype}, the kernels read int32 words")
    if a.values.dtype != b.dtype:
        raise TypeError(f"A is {a.values.dtype} but B is {b.dtype}")
    check_layout("a.values", a.values)
    check_layout("a.meta", a.meta)


def _check_perm(perm: torch.Tensor, k: int) -> None:
    if perm.dtype != torch.int32:
        raise TypeError(
            f"perm is {perm.dtype}; the kernel reads int32 indices: pass perm.to(torch.int32)"
        )
    if perm.dim() != 1 or perm.numel() != k:
        raise ValueError(f"perm has shape {tuple(perm.shape)}, need ({k},): one index per K")
    check_layout("perm", perm, aligned=False)


def gemm_plan(
    a: Compressed | torch.Tensor,
    b: torch.Tensor,
    config: Config,
    *,
    family: str,
    perm: torch.Tensor | None,
    out: torch.Tensor | None,
    out_dtype: torch.dtype | None,
    transpose_out: bool,
    b_layout: str = "nk",
) -> GemmPlan:
    """Every check of ``kernels.ops.nm_gemm``'s operands; raises ValueError / TypeError."""
    if b_layout not in ("nk", "kn"):
        raise ValueError(
            f"b_layout must be 'nk' (B is N x K) or 'kn' (B is K x N), not {b_layout!r}"
        )
    if family not in GEMM_FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; choose one of {sorted(GEMM_FAMILIES)}")
    roles = GEMM_FAMILIES[family]
    sparse = isinstance(a, Compressed)
    if not sparse and not isinstance(a, torch.Tensor):
        raise TypeError(f"A must be a Compressed or a torch tensor, got {type(a).__name__}")
    if not sparse and perm is not None:
        raise ValueError("perm applies to the sparse kernel only")
    named = {"a.values": a.values, "a.meta": a.meta} if sparse else {"a": a}
    named["b"] = b
    named.update({k: v for k, v in (("perm", perm), ("out", out)) if v is not None})
    dev = check_devices(named)
    kn = b_layout == "kn"
    if kn and (perm is None or "gather_kn" not in roles):
        have = sorted(f for f, r in GEMM_FAMILIES.items() if "gather_kn" in r)
        raise ValueError(
            "b_layout='kn' (B given K x N) is the permuted gather's layout: pass perm, on "
            f"family {' or '.join(map(repr, have))}"
        )
    if kn:
        name = roles["gather_kn"]
    else:
        name = roles["dense"] if not sparse else roles["gather" if perm is not None else "sparse"]
    variant = VARIANTS[name]
    if b.dim() != 2 or (not sparse and a.dim() != 2):
        shapes = f"A {tuple(a.shape) if not sparse else 'compressed'}, B {tuple(b.shape)}"
        want = "K x N" if kn else "N x K"
        raise ValueError(f"the GEMM takes 2-D A (M x K) and B ({want}), got {shapes}")
    m, k = (a.rows, a.k) if sparse else a.shape
    n, bk = (b.shape[1], b.shape[0]) if kn else b.shape
    if bk != k:
        raise ValueError(f"B has K={bk}, A has K={k}")
    dtype = half_dtype("B", b, variant)
    if sparse:
        _check_compressed(a, b)
    else:
        half_dtype("A", a, variant)
        if a.dtype != b.dtype:
            raise TypeError(f"A is {a.dtype} but B is {b.dtype}")
        check_layout("a", a, aligned=k % 8 == 0)  # K % 8 != 0: the launcher pads a copy
    check_layout("b", b, aligned=(n if kn else k) % 8 == 0)  # else the launcher pads a copy
    if perm is not None:
        _check_perm(perm, k)
    check_sizes(M=_round_up(m, TILE), N=n, K=_round_up(k, TILE))
    if set(config.to_dict()) != set(variant.tunables):
        raise ValueError(
            f"{name}: config {config.to_json()} must set exactly {sorted(variant.tunables)}"
        )
    if not variant.space().allows(config.to_dict()):
        raise ValueError(f"{name}: config {config.to_json()} breaks a restriction")
    info = kdevice.device_info(dev)
    if why := variant.runs_on(info.cc):
        raise ValueError(f"{why}; family='sm80' runs on any sm_80+ GPU")
    if (need := variant.smem(config.to_dict())) > info.smem_optin:
        raise ValueError(
            f"{name}: config {config.to_json()} needs {need} bytes of shared memory per block, "
            f"this device ({info}) allows {info.smem_optin}; pick one of "
            f"VARIANTS[{name!r}].space(smem_limit={info.smem_optin})"
        )
    if out_dtype not in (None, torch.float32, b.dtype):
        raise TypeError(f"out_dtype must be None, torch.float32 or {b.dtype}, not {out_dtype}")
    f32 = out_dtype == torch.float32 or config["SPLIT_K"] > 1  # split-K adds fp32 atomically
    want_dtype = torch.float32 if f32 else b.dtype
    shape = (n, m) if transpose_out else (m, n)
    if out is not None:
        if out.dtype != want_dtype:
            why = (
                "split-K accumulates in float32"
                if config["SPLIT_K"] > 1
                else "out_dtype=torch.float32"
                if f32
                else "the inputs' dtype; pass out_dtype=torch.float32 for a float32 out"
            )
            raise TypeError(f"out is {out.dtype}, the kernel writes {want_dtype} ({why})")
        if tuple(out.shape) != shape:
            raise ValueError(f"out has shape {tuple(out.shape)}, the GEMM writes {shape}")
        check_layout("out", out, aligned=False)
    return GemmPlan(variant, m, n, k, dtype, f32, shape, want_dtype, info)


def check_compress_input(w: torch.Tensor, threads: int, variant: KernelVariant) -> str:
    """Checks of ``compress_gpu``'s matrix; returns its kernel dtype name."""
    check_devices({"w": w})
    if w.dim() != 2:
        raise ValueError(f"compress_gpu takes a 2-D (rows x K) matrix, got shape {tuple(w.shape)}")
    dtype = half_dtype("w", w, None)
    if threads not in variant.tunables["THREADS_PER_BLOCK"]:
        raise ValueError(
            f"threads={threads}; {variant.name} runs {variant.tunables['THREADS_PER_BLOCK']}"
        )
    check_sizes(rows=_round_up(w.shape[0], TILE), K=_round_up(w.shape[1], TILE))
    return dtype


def check_error_flag(error: torch.Tensor, w: torch.Tensor) -> None:
    """A violation flag the compress kernel may OR into: one int32 on ``w``'s device."""
    check_devices({"w": w, "error": error})
    if error.dtype != torch.int32 or error.numel() != 1:
        raise TypeError(
            f"error must be one int32 element, got {error.dtype} of shape {tuple(error.shape)}"
        )
