"""GPU correctness of our kernels (marked; skipped with a reason where there is no GPU).

Every output is poisoned with NaN before the run and every element is checked against a float64
reference on fresh random inputs (never zeros).
"""

import pytest
import torch

from bimask import bimask_backward_mask, find_permutation, nm_mask
from kernels import compress
from kernels.registry import VARIANTS
from suite.shapes import correctness_cases
from suite.space import Config

pytestmark = [pytest.mark.gpu, pytest.mark.cupy, pytest.mark.nvcc]
PATTERNS = ["2:4", "1:4", "2:8", "1:16"]
CASES = correctness_cases()
DEFAULT = VARIANTS["nm_spmm"].default()
# small tiles (many blocks and K tiles on the small shapes), the rest of each family's default
SMALL = Config.of(
    {**DEFAULT.to_dict(), "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "WARPS_M": 2,
     "WARPS_N": 2, "STAGES": 2, "SMEM_PAD": 8, "SPLIT_K": 1}
)  # fmt: skip
DEFAULT_SM90 = VARIANTS["nm_spmm_sm90"].default()
SMALL_SM90 = Config.of(
    {**DEFAULT_SM90.to_dict(), "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "WARPGROUPS": 1,
     "STAGES": 2, "INFLIGHT": 0, "SMEM_PAD": 1, "SPLIT_K": 1}
)  # fmt: skip
# the copy-engine main loop (issue 11.8): small tiles (every swizzle width: 32-byte compressed A
# rows, 64-byte B rows) and the default tile (64 / 128 bytes, two consumer warpgroups)
TMA_SM90 = {
    "tma-small": Config.of({**SMALL_SM90.to_dict(), "SMEM_PAD": 0, "TMA": 1}),
    "tma-default": Config.of({**DEFAULT_SM90.to_dict(), "SMEM_PAD": 0, "TMA": 1}),
    "tma-k128": Config.of(
        {
            **DEFAULT_SM90.to_dict(),
            "BLOCK_M": 128,
            "BLOCK_K": 128,
            "STAGES": 3,
            "SMEM_PAD": 0,
            "TMA": 1,
        }
    ),  # fmt: skip
}
# per kernel family: a small config (many blocks and K tiles on the small shapes) and the default
CONFIGS = {
    "sm80": {"small": SMALL, "default": DEFAULT},
    "sm90": {"small": SMALL_SM90, "default": DEFAULT_SM90, **TMA_SM90},
}
FAMILIES = [
    "sm80",
    pytest.param("sm90", marks=pytest.mark.hopper),  # wgmma: compute capability 9.0 only
]


def _rel(out, ref):
    out = out.double().cpu()
    assert torch.isfinite(out).all(), "poisoned (NaN) outputs were left unwritten"
    return float((out - ref).abs().max() / ref.abs().max())


def _run(a_comp_or_dense, b, config, **kw):
    from kernels.ops import nm_gemm

    n = b.shape[1] if kw.get("b_layout") == "kn" else b.shape[0]
    shape = (n, kw_m(a_comp_or_dense)) if kw.get("transpose_out") else (kw_m(a_comp_or_dense), n)
    f32 = kw.get("out_dtype") == torch.float32 or config["SPLIT_K"] > 1
    out = torch.full(shape, float("nan"), device="cuda", dtype=torch.float32 if f32 else b.dtype)
    if config["SPLIT_K"] > 1:
        out.zero_()  # split-K accumulates into its output
    nm_gemm(a_comp_or_dense, b, config, out=out, **kw)
    torch.cuda.synchronize()
    return out


def kw_m(a):
    return a.rows if hasattr(a, "rows") else a.shape[0]


def _to_gpu(c):
    from dataclasses import replace

    return replace(c, values=c.values.cuda(), meta=c.meta.cuda())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['m']}x{c['n']}x{c['k']}")
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("config", ["small", "default"])
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_against_float64(case, pattern, config, family):
    g = torch.Generator().manual_seed(case["seed"])
    w = torch.randn(case["m"], case["k"], generator=g).bfloat16()
    a = w * nm_mask(w, pattern)
    x = torch.randn(case["n"], case["k"], generator=g).bfloat16()
    ref = a.double() @ x.double().t()
    out = _run(_to_gpu(compress(a, pattern)), x.cuda(), CONFIGS[family][config], family=family)
    assert _rel(out, ref) < 1e-2


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['m']}x{c['n']}x{c['k']}")
@pytest.mark.parametrize("family", FAMILIES)
def test_dense_kernel_against_float64(case, family):
    g = torch.Generator().manual_seed(case["seed"])
    a = torch.randn(case["m"], case["k"], generator=g).bfloat16()
    b = torch.randn(case["n"], case["k"], generator=g).bfloat16()
    out = _run(a.cuda(), b.cuda(), CONFIGS[family]["small"], family=family)
    assert _rel(out, a.double() @ b.double().t()) < 1e-2


# Hopper configs off the default path: two warpgroups x two m64 tiles, no smem padding, fp16,
# a 64-wide wgmma N, deeper pipelines, and the dense twin with one wgmma group in flight.
SM90_CORNERS = [
    {"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 128, "WARPGROUPS": 2, "STAGES": 3, "SMEM_PAD": 0},
    {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64, "WARPGROUPS": 1, "STAGES": 5, "SMEM_PAD": 1},
    {"BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 32, "WARPGROUPS": 1, "STAGES": 4, "SMEM_PAD": 0},
]


@pytest.mark.hopper
@pytest.mark.parametrize("corner", SM90_CORNERS, ids=lambda c: "x".join(map(str, c.values())))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sm90_configs_sparse_and_dense(corner, dtype):
    g = torch.Generator().manual_seed(21)
    m, n, k = 300, 200, 416  # no dimension a tile multiple
    w = torch.randn(m, k, generator=g).to(dtype)
    a = w * nm_mask(w, "2:4")
    x = torch.randn(n, k, generator=g).to(dtype)
    cfg = Config.of({**SMALL_SM90.to_dict(), **corner})
    out = _run(_to_gpu(compress(a, "2:4")), x.cuda(), cfg, family="sm90")
    assert _rel(out, a.double() @ x.double().t()) < 1e-2
    dense_cfg = Config.of({**cfg.to_dict(), "INFLIGHT": 1})
    out = _run(a.cuda(), x.cuda(), dense_cfg, family="sm90")
    assert _rel(out, a.double() @ x.double().t()) < 1e-2


@pytest.mark.hopper
@pytest.mark.parametrize("name", sorted(TMA_SM90))
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['m']}x{c['n']}x{c['k']}")
def test_sm90_copy_engine_main_loop_against_float64(name, case):
    """Issue 11.8: TMA loads into swizzled tiles, a producer warpgroup, mbarriers: sparse and
    dense against float64, on shapes with tails in every dimension (the copy engine zero-fills)."""
    cfg = TMA_SM90[name]
    g = torch.Generator().manual_seed(case["seed"])
    w = torch.randn(case["m"], case["k"], generator=g).bfloat16()
    x = torch.randn(case["n"], case["k"], generator=g).bfloat16()
    for pattern in ("2:4", "1:16"):
        a = w * nm_mask(w, pattern)
        out = _run(_to_gpu(compress(a, pattern)), x.cuda(), cfg, family="sm90")
        assert _rel(out, a.double() @ x.double().t()) < 1e-2, pattern
    out = _run(w.cuda(), x.cuda(), cfg, family="sm90")
    assert _rel(out, w.double() @ x.double().t()) < 1e-2, "dense"


@pytest.mark.hopper
def test_sm90_copy_engine_with_float16_split_k_and_the_training_layout():
    g = torch.Generator().manual_seed(5)
    m, n, k = 520, 200, 1040
    w = torch.randn(m, k, generator=g).half()
    a = w * nm_mask(w, "2:4")
    x = torch.randn(n, k, generator=g).half()
    ref = a.double() @ x.double().t()
    base = TMA_SM90["tma-default"].to_dict()
    comp = _to_gpu(compress(a, "2:4"))
    out = _run(comp, x.cuda(), Config.of({**base, "SPLIT_K": 2}), family="sm90")
    assert out.dtype == torch.float32 and _rel(out, ref) < 1e-2
    out = _run(comp, x.cuda(), Config.of(base), family="sm90", transpose_out=True)
    assert _rel(out, ref.t()) < 1e-2


@pytest.mark.parametrize("realisation", ["gather_in_kernel", "pre_permuted"])
@pytest.mark.parametrize("family", FAMILIES)
def test_bimask_backward_data_pass(realisation, family):
    g = torch.Generator().manual_seed(7)
    out_f, in_f, tokens = 96, 160, 72
    w = torch.randn(out_f, in_f, generator=g)
    mf = nm_mask(w, "2:4")
    perm = find_permutation(w, mf, "2:4", "greedy")
    mb = bimask_backward_mask(w, mf, "2:4", perm)
    dy = torch.randn(tokens, out_f, generator=g).bfloat16()
    a = ((w * mb).t()).bfloat16()  # (in x out): N:M along out in pi order
    ref = dy.double() @ (w * mb).double()  # dX = dY (W*Mb): (tokens x in)
    a_perm = a[:, perm]  # k axis in pi order: consecutive N:M groups
    comp = _to_gpu(compress(a_perm, "2:4"))
    cfg, kw = CONFIGS[family]["small"], {"transpose_out": True, "family": family}
    if realisation == "gather_in_kernel":
        out = _run(comp, dy.cuda(), cfg, perm=perm.int().cuda(), **kw)
    else:
        out = _run(comp, dy[:, perm].contiguous().cuda(), cfg, **kw)
    assert out.shape == (tokens, in_f)
    assert _rel(out, ref) < 1e-2


@pytest.mark.parametrize("tokens", [72, 75])  # 75: B^T's rows are not 16-byte chunks (padded)
@pytest.mark.parametrize("ldmatrix", [0, 1])
def test_the_k_major_gather_copies_rows_and_matches_float64(tokens, ldmatrix):
    """Issue 11.7: B handed over K-major (dY^T) and gathered by whole rows with cp.async."""
    g = torch.Generator().manual_seed(8)
    out_f, in_f = 96, 160
    w = torch.randn(out_f, in_f, generator=g)
    mf = nm_mask(w, "2:4")
    perm = find_permutation(w, mf, "2:4", "greedy")
    mb = bimask_backward_mask(w, mf, "2:4", perm)
    dy = torch.randn(tokens, out_f, generator=g).bfloat16()
    ref = dy.double() @ (w * mb).double()
    comp = _to_gpu(compress(((w * mb).t()).bfloat16()[:, perm], "2:4"))
    for name in ("small", "default"):
        cfg = Config.of({**CONFIGS["sm80"][name].to_dict(), "LDMATRIX": ldmatrix})
        out = _run(comp, dy.t().contiguous().cuda(), cfg, perm=perm.int().cuda(),
                   transpose_out=True, b_layout="kn")  # fmt: skip
        assert _rel(out, ref) < 1e-2, name


@pytest.mark.parametrize("family", FAMILIES)
def test_split_k_and_float32_output(family):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(128, 512, generator=g).bfloat16()
    a = w * nm_mask(w, "2:4")
    x = torch.randn(96, 512, generator=g).bfloat16()
    cfg = Config.of({**CONFIGS[family]["small"].to_dict(), "SPLIT_K": 4})
    out = _run(_to_gpu(compress(a, "2:4")), x.cuda(), cfg, family=family)
    assert out.dtype == torch.float32 and _rel(out, a.double() @ x.double().t()) < 1e-2


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("shape", [(64, 64), (45, 80), (130, 48)])
def test_gpu_compress_equals_the_cpu_reference_byte_for_byte(pattern, shape):
    from kernels.ops import compress_gpu

    g = torch.Generator().manual_seed(11)
    w = torch.randn(shape, generator=g).bfloat16()
    mask = nm_mask(w, pattern)
    cpu = compress(w * mask, pattern, mask=mask)
    gpu = compress_gpu(w.cuda(), pattern)
    assert torch.equal(gpu.values.cpu(), cpu.values)
    assert torch.equal(gpu.meta.cpu(), cpu.meta)
    packed = compress_gpu((w * mask).cuda(), pattern, masked=True)
    assert torch.equal(packed.values.cpu(), compress(w * mask, pattern).values)


def test_pycuda_backend_matches_cupy():
    pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install .[pycuda])")
    g = torch.Generator().manual_seed(5)
    w = torch.randn(64, 64, generator=g).bfloat16()
    a = w * nm_mask(w, "2:4")
    x = torch.randn(32, 64, generator=g).bfloat16()
    comp = _to_gpu(compress(a, "2:4"))
    out_cupy = _run(comp, x.cuda(), SMALL)
    out_pycuda = _run(comp, x.cuda(), SMALL, launcher="pycuda")
    assert torch.equal(out_cupy, out_pycuda)


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_check_passes_on_this_device(family):
    from kernels.check import check_family
    from kernels.registry import GEMM_FAMILIES

    results = check_family(family)
    assert len(results) == len(GEMM_FAMILIES[family])  # a row per kernel: sparse, gather(s), dense
    assert all(r.ok and not r.skipped for r in results), results


@pytest.mark.parametrize("family", FAMILIES)
def test_the_largest_config_this_device_allows_launches_and_one_beyond_is_refused(family):
    """The space restricted by the device's own opt-in shared memory launches at its edge (the
    config asking the most shared memory), and a config needing more is a clear error."""
    from kernels.device import device_info
    from kernels.registry import GEMM_FAMILIES

    info = device_info(torch.cuda.current_device())
    g = torch.Generator().manual_seed(13)
    m, n, k = 200, 136, 320
    w = torch.randn(m, k, generator=g).bfloat16()
    a = w * nm_mask(w, "2:4")
    x = torch.randn(n, k, generator=g).bfloat16()
    ref = a.double() @ x.double().t()
    for role, lhs in (("sparse", _to_gpu(compress(a, "2:4"))), ("dense", a.cuda())):
        v = VARIANTS[GEMM_FAMILIES[family][role]]
        assert v.smem(v.default().to_dict()) <= info.smem_optin
        fits = [c for c in v.space(smem_limit=info.smem_optin) if c["SPLIT_K"] == 1]
        edge = max(fits, key=lambda c: v.smem(c.to_dict()))
        assert _rel(_run(lhs, x.cuda(), edge, family=family), ref) < 1e-2, edge.to_json()
        beyond = [c for c in v.space() if v.smem(c.to_dict()) > info.smem_optin]
        if beyond:  # none where the device allows the whole space (A100 for sm80)
            with pytest.raises(ValueError, match="bytes of shared memory per block"):
                _run(lhs, x.cuda(), beyond[0], family=family)


def test_operand_checks_hold_on_the_device():
    """The CPU-tested checks on real device tensors: host operands refused, an empty M an empty
    result, a misaligned B refused, an int64 perm refused (each before a launch)."""
    from kernels.ops import nm_gemm

    g = torch.Generator().manual_seed(17)
    w = torch.randn(64, 96, generator=g).bfloat16()
    a = w * nm_mask(w, "2:4")
    comp = compress(a, "2:4")
    x = torch.randn(40, 96, generator=g).bfloat16().cuda()
    with pytest.raises(ValueError, match="is on cpu.*cuda"):
        nm_gemm(comp, x, SMALL)
    comp = _to_gpu(comp)
    assert nm_gemm(_to_gpu(compress(a[:0], "2:4")), x, SMALL).shape == (0, 40)
    misaligned = torch.empty(40 * 96 + 8, dtype=x.dtype, device="cuda")[1 : 1 + 40 * 96]
    with pytest.raises(ValueError, match="16-byte aligned"):
        nm_gemm(comp, misaligned.view(40, 96).copy_(x), SMALL)
    with pytest.raises(TypeError, match="int32"):
        nm_gemm(comp, x, SMALL, perm=torch.randperm(96, device="cuda"))


def test_gpu_compress_reports_a_violation_into_a_given_flag_without_raising():
    from kernels.ops import compress_gpu

    bad = torch.ones(64, 64, dtype=torch.bfloat16, device="cuda")  # 4 of every 4 kept
    flag = torch.zeros(1, dtype=torch.int32, device="cuda")
    compress_gpu(torch.zeros_like(bad), "2:4", masked=True, error=flag)
    assert int(flag.item()) == 0
    compress_gpu(bad, "2:4", masked=True, error=flag)  # no raise: nothing was read
    assert int(flag.item()) == 1
    with pytest.raises(ValueError, match="more than 2 of an aligned 4"):
        compress_gpu(bad, "2:4", masked=True)  # without a flag: read at once


def test_the_plain_mma_sp_of_older_toolkits_gives_the_same_result(monkeypatch):
    """CUDA < 12.5 builds plain mma.sp (kernels/cuda/ptx_features.cuh): forced here with
    MMA_SP_ORDERED=0, it must agree bit for bit with the ordered form on the same inputs."""
    from dataclasses import replace as with_fields

    from kernels.launch import CupyLauncher

    g = torch.Generator().manual_seed(19)
    w = torch.randn(200, 320, generator=g).bfloat16()
    a = w * nm_mask(w, "2:4")
    x = torch.randn(136, 320, generator=g).bfloat16().cuda()
    comp = _to_gpu(compress(a, "2:4"))
    ordered = _run(comp, x, SMALL)
    v = VARIANTS["nm_spmm"]
    CupyLauncher.function.cache_clear()  # loaded functions are cached by variant name
    monkeypatch.setitem(VARIANTS, "nm_spmm", with_fields(v, fixed={**v.fixed, "MMA_SP_ORDERED": 0}))
    try:
        plain = _run(comp, x, SMALL)
    finally:
        CupyLauncher.function.cache_clear()
    assert torch.equal(plain, ordered)
    assert _rel(plain, a.double() @ x.cpu().double().t()) < 1e-2


# Issue 11.6: ldmatrix fragments and the staged 16-byte epilogue, alone and together, on shapes
# no tile divides, written transposed (as both training GEMMs write) and plain with fp16 inputs
# and fp32 output; the dense twin and the in-kernel gather take the same fragment and epilogue
# code. Few combinations: each is three kernels that the GPU host compiles itself.
SM80_LOADS_AND_STORES = [
    ({"LDMATRIX": 1, "EPI_SMEM": 0}, torch.bfloat16, True, None),
    ({"LDMATRIX": 0, "EPI_SMEM": 1}, torch.bfloat16, True, None),
    ({"LDMATRIX": 1, "EPI_SMEM": 1}, torch.bfloat16, True, None),
    ({"LDMATRIX": 1, "EPI_SMEM": 1}, torch.float16, False, torch.float32),
]


@pytest.mark.parametrize(
    ("change", "dtype", "transpose_out", "out_dtype"),
    SM80_LOADS_AND_STORES,
    ids=["ldsm", "epi", "both-bf16-trans", "both-fp16-f32out"],
)
def test_sm80_ldmatrix_and_staged_epilogue(change, dtype, transpose_out, out_dtype):
    g = torch.Generator().manual_seed(11)
    m, n, k = 200, 136, 352  # no dimension a tile multiple; n % 8 == 0 keeps C^T rows aligned
    w = torch.randn(m, k, generator=g).to(dtype)
    a = w * nm_mask(w, "2:4")
    x = torch.randn(n, k, generator=g).to(dtype)
    ref = a.double() @ x.double().t()
    ref = ref.t() if transpose_out else ref
    cfg = Config.of({**SMALL.to_dict(), **change})
    kw = {"family": "sm80", "transpose_out": transpose_out, "out_dtype": out_dtype}
    assert _rel(_run(_to_gpu(compress(a, "2:4")), x.cuda(), cfg, **kw), ref) < 1e-2
    assert _rel(_run(a.cuda(), x.cuda(), cfg, **kw), ref) < 1e-2  # the dense twin
    perm = torch.randperm(k, generator=g)
    ap = a[:, perm]  # gather: C = A' . B[:, perm]^T with A' N:M along the permuted K
    ap = ap * nm_mask(ap, "2:4")
    refp = ap.double() @ x[:, perm].double().t()
    refp = refp.t() if transpose_out else refp
    outp = _run(_to_gpu(compress(ap, "2:4")), x.cuda(), cfg, perm=perm.int().cuda(), **kw)
    assert _rel(outp, refp) < 1e-2


def test_sm80_staged_epilogue_on_an_unaligned_leading_dimension():
    """A C whose rows are not 16-byte aligned (odd M written transposed) takes the element path."""
    g = torch.Generator().manual_seed(12)
    m, n, k = 77, 64, 128
    w = torch.randn(m, k, generator=g).bfloat16()
    a = w * nm_mask(w, "2:4")
    x = torch.randn(n, k, generator=g).bfloat16()
    cfg = Config.of({**SMALL.to_dict(), "LDMATRIX": 1, "EPI_SMEM": 1})
    out = _run(_to_gpu(compress(a, "2:4")), x.cuda(), cfg, family="sm80", transpose_out=True)
    assert _rel(out, (a.double() @ x.double().t()).t()) < 1e-2
