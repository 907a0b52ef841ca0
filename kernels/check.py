"""A quick on-device sanity check of every GEMM kernel family (``python -m kernels check``).

One launch per kernel (sparse, sparse with the permuted-B gather, its K-major twin where the
family has one, dense) of each of our families
the device runs, and of the CUTLASS sm90 family's default (compressed by CUTLASS's own device
compressor; Hopper only), on shapes that are no tile multiple, output poisoned with NaN first,
every element compared with a float64 product on the device. It is small enough to run under
``compute-sanitizer``; the full acceptance suite is tests/test_kernels_gpu.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from kernels.format import compress
from kernels.registry import GEMM_FAMILIES, VARIANTS

TOLERANCE = 1e-2  # relative to max |reference|, for bfloat16 inputs with float32 accumulation


@dataclass(frozen=True)
class CheckResult:
    family: str
    variant: str
    shape: tuple[int, int, int]
    rel_error: float
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.skipped) or self.rel_error < TOLERANCE


def top2_of_4(w: torch.Tensor) -> torch.Tensor:
    """W with the two largest |w| of every aligned 4 along K kept (a 2:4 mask)."""
    rows, k = w.shape
    groups = w.reshape(rows, k // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.abs().topk(2, dim=-1).indices, True)
    return (groups * keep).reshape(rows, k)


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.double()
    if not torch.isfinite(out).all():
        return float("inf")  # a NaN left from the poison: elements never written
    return float((out - ref).abs().max() / ref.abs().max())


def check_family(family: str, m: int = 200, n: int = 136, k: int = 320, seed: int = 0):
    """Results for the sparse, gather and dense kernels of ``family`` on this device."""
    from kernels.ops import nm_gemm

    roles = GEMM_FAMILIES[family]
    cc = torch.cuda.get_device_capability()
    g = torch.Generator().manual_seed(seed)
    a = top2_of_4(torch.randn(m, k, generator=g)).bfloat16()
    b = torch.randn(n, k, generator=g).bfloat16()
    perm = torch.randperm(k, generator=g)
    comp = compress(a, "2:4")
    comp = replace(comp, values=comp.values.cuda(), meta=comp.meta.cuda())
    a_gpu, b_gpu = a.cuda(), b.cuda()
    ref = a_gpu.double() @ b_gpu.double().t()
    cases = {
        "sparse": (comp, b_gpu, {}, ref),
        "gather": (
            comp,
            b_gpu,
            {"perm": perm.int().cuda()},
            a_gpu.double() @ b_gpu[:, perm.cuda()].double().t(),
        ),
        "dense": (a_gpu, b_gpu, {}, ref),
    }
    if "gather_kn" in roles:  # the same gather with B handed over K x N
        gather = cases["gather"]
        cases["gather_kn"] = (
            comp,
            b_gpu.t().contiguous(),
            {**gather[2], "b_layout": "kn"},
            gather[3],
        )
    results = []
    for role, (lhs, rhs, kw, expect) in cases.items():
        variant = VARIANTS[roles[role]]
        if why := variant.runs_on(cc):
            results.append(CheckResult(family, variant.name, (m, n, k), float("nan"), why))
            continue
        out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
        nm_gemm(lhs, rhs, variant.default(), out=out, family=family, **kw)
        torch.cuda.synchronize()
        results.append(CheckResult(family, variant.name, (m, n, k), _rel(out, expect)))
    return results


def check_cutlass(m: int = 200, n: int = 136, k: int = 320, seed: int = 0):
    """The CUTLASS sm90 family's default config, bfloat16 and float16, on this device (a row
    saying why not where the family cannot run: another GPU, no CUTLASS headers and no cache)."""
    variant = VARIANTS["cutlass_sm90_sparse"]
    if why := variant.is_available():
        return [CheckResult("cutlass_sm90", variant.name, (m, n, k), float("nan"), why)]
    from kernels.cutlass_ops import cutlass_compress, cutlass_gemm

    g = torch.Generator().manual_seed(seed)
    results = []
    for dtype in (torch.bfloat16, torch.float16):
        a = top2_of_4(torch.randn(m, k, generator=g)).to(dtype).cuda()
        b = torch.randn(n, k, generator=g).to(dtype).cuda()
        out = torch.full((m, n), float("nan"), device="cuda", dtype=dtype)
        cutlass_gemm(cutlass_compress(a, variant.default()), b, variant.default(), out=out)
        torch.cuda.synchronize()
        name = f"{variant.name} {str(dtype).removeprefix('torch.')}"
        results.append(
            CheckResult("cutlass_sm90", name, (m, n, k), _rel(out, a.double() @ b.double().t()))
        )
    return results


# family name (python -m kernels check --family) -> its check
CHECKS = {
    **{f: (lambda f=f: check_family(f)) for f in GEMM_FAMILIES},
    "cutlass_sm90": check_cutlass,
}
