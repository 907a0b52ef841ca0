"""Every registered variant builds for sm_80 and sm_90a, and its SASS holds the MMA it claims.

The sparse check fails if someone replaces the sparse path by a dense one.
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from kernels import nvrtc
from kernels.__main__ import main as kernels_main
from kernels.build import (
    WGMMA_SERIALIZED,
    _tool,
    compile_variant,
    count_matching,
    sass_instructions,
    sass_sequence,
)
from kernels.registry import VARIANTS
from kernels.space import Config

needs_sass = pytest.mark.skipif(
    not (_tool("cuobjdump") and _tool("nvdisasm")),
    reason="cuobjdump/nvdisasm missing: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm",
)


BUILDS = [(name, arch) for name in sorted(VARIANTS) for arch in VARIANTS[name].archs]


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize(("name", "arch"), BUILDS, ids=[f"{n}-{a}" for n, a in BUILDS])
def test_variant_compiles_and_holds_its_mma(name, arch):
    v = VARIANTS[name]
    built = compile_variant(v, v.default(), arch)
    sass = sass_instructions(built.cubin)
    sparse_mma = count_matching(sass, "HMMA.SP") + count_matching(sass, "HGMMA.SP")
    if v.sparse:
        assert sparse_mma > 0, f"{name}: no sparse MMA in the SASS"
    else:
        assert sparse_mma == 0
    if v.sass_instruction:
        assert count_matching(sass, v.sass_instruction) > 0


@pytest.mark.nvcc
@needs_sass
def test_hopper_kernels_use_warpgroup_mma_not_the_warp_level_one():
    for name in ("nm_spmm_sm90", "dense_gemm_sm90"):
        v = VARIANTS[name]
        sass = sass_instructions(compile_variant(v, v.default(), "sm_90a").cubin)
        assert count_matching(sass, "HGMMA") > 0 and count_matching(sass, "HMMA") == 0, name


@pytest.mark.nvcc
@needs_sass
def test_hopper_sparse_kernel_does_half_the_gmma_work_of_the_dense_one():
    sp, de = VARIANTS["nm_spmm_sm90"], VARIANTS["dense_gemm_sm90"]
    assert sp.default() == de.default()  # same tiles: the counts compare like for like
    n_sp = count_matching(
        sass_instructions(compile_variant(sp, sp.default(), "sm_90a").cubin), "HGMMA.SP"
    )
    n_de = count_matching(
        sass_instructions(compile_variant(de, de.default(), "sm_90a").cubin), "HGMMA.64x"
    )
    assert n_sp > 0 and n_de == 2 * n_sp  # per 32 K: one m64nNk32 .sp versus two m64nNk16


@pytest.mark.nvcc
@pytest.mark.parametrize("name", ["nm_spmm_sm90", "nm_spmm_gather_sm90", "dense_gemm_sm90"])
def test_hopper_builds_keep_their_wgmmas_pipelined(name):
    """ptxas serializes wgmmas (warning C7513/C7515, each one waited for alone) when registers
    they read are rewritten while they run; every corner of the space must be free of it."""
    v = VARIANTS[name]
    for config in v.corners():
        log = compile_variant(v, config, "sm_90a").ptxas_log
        assert "registers" in log, "no ptxas report captured: the check below could not fail"
        assert not WGMMA_SERIALIZED.search(log), f"{name} {config.to_json()}: {log}"


@pytest.mark.nvcc
def test_sparse_hopper_kernel_refuses_a_wgmma_group_in_flight():
    from kernels.build import CompileError
    from suite.space import Config

    v = VARIANTS["nm_spmm_sm90"]
    assert not v.space().allows({**v.default().to_dict(), "INFLIGHT": 1})
    bad = Config.of({**v.default().to_dict(), "INFLIGHT": 1})
    with pytest.raises(CompileError, match="waits for its wgmmas"):
        compile_variant(v, bad, "sm_90a")


@pytest.mark.nvcc
def test_hopper_variant_refuses_other_targets():
    from kernels.build import CompileError

    v = VARIANTS["nm_spmm_sm90"]
    with pytest.raises(CompileError, match="sm_90a only"):
        compile_variant(v, v.default(), "sm_80")


def test_runs_on_names_the_compute_capability():
    assert VARIANTS["nm_spmm"].runs_on((9, 0)) is None
    assert VARIANTS["nm_spmm_sm90"].runs_on((9, 0)) is None
    assert "9.0 to 9.0" in VARIANTS["nm_spmm_sm90"].runs_on((8, 0))
    assert "has 10.0" in VARIANTS["nm_spmm_sm90"].runs_on((10, 0))  # no wgmma on Blackwell
    assert "8.0+" in VARIANTS["nm_spmm"].runs_on((7, 5))


@pytest.mark.nvcc
@needs_sass
def test_sparse_kernel_does_half_the_mma_work_of_the_dense_one():
    sp, de = VARIANTS["nm_spmm"], VARIANTS["dense_gemm"]
    n_sp = count_matching(sass_instructions(compile_variant(sp, sp.default()).cubin), "HMMA.SP")
    n_de = count_matching(sass_instructions(compile_variant(de, de.default()).cubin), "HMMA.1681")
    assert n_de == 2 * n_sp  # per 32 K: one m16n8k32 .sp versus two m16n8k16


@pytest.mark.nvcc
def test_invalid_config_is_a_compile_error_not_a_wrong_kernel():
    from kernels.build import CompileError
    from suite.space import Config

    v = VARIANTS["nm_spmm"]
    bad = Config.of({**v.default().to_dict(), "BLOCK_K": 48})  # not a multiple of 32
    with pytest.raises(CompileError, match="BLOCK_K"):
        compile_variant(v, bad)


@pytest.mark.skipif(nvrtc.available() is not None, reason=str(nvrtc.available()))
@needs_sass
@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("nm_spmm", "sm_80"),
        ("dense_gemm", "sm_80"),
        ("nm_compress", "sm_80"),
        ("nm_spmm_sm90", "sm_90a"),
        ("dense_gemm_sm90", "sm_90a"),
    ],
)
def test_nvrtc_builds_the_same_instructions(name, arch):
    v = VARIANTS[name]
    cubin = Path(tempfile.mkdtemp()) / "k.cubin"
    cubin.write_bytes(nvrtc.compile_cubin(v, v.default(), arch))
    nvrtc_sass = sass_instructions(cubin)
    nvcc_sass = sass_instructions(compile_variant(v, v.default(), arch).cubin)
    for op in ("HMMA", "HGMMA"):
        assert count_matching(nvrtc_sass, op) == count_matching(nvcc_sass, op)
    shutil.rmtree(cubin.parent)


def test_cli_list_names_every_variant(capsys):
    assert kernels_main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in VARIANTS) and "configs after restrictions" in out


@pytest.mark.nvcc
@needs_sass
def test_cli_compile_checks_every_variant(capsys):
    assert kernels_main(["compile", "--arch", "sm_80", "--default-only"]) == 0
    out = capsys.readouterr().out
    assert "nm_spmm" in out and "HMMA.SP" in out and "FAIL" not in out


def test_cli_check_needs_a_gpu_and_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: tests/test_kernels_gpu.py covers kernels check")
    assert kernels_main(["check"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_check_covers_every_family_and_cutlass_says_why_it_cannot_run_here():
    import torch

    from kernels.check import CHECKS
    from kernels.registry import GEMM_FAMILIES

    assert set(CHECKS) == {*GEMM_FAMILIES, "cutlass_sm90"}
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: tests/test_cutlass_gpu.py runs the check")
    (row,) = CHECKS["cutlass_sm90"]()
    assert row.ok and "no CUDA device" in row.skipped  # a stated skip, never a crash


def test_check_mask_keeps_the_two_largest_of_every_aligned_four():
    import torch

    from kernels.check import top2_of_4

    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 4.0, -0.2, 0.3, -5.0]])
    kept = top2_of_4(w)
    assert kept.tolist() == [[0.0, -3.0, 2.0, 0.0, 4.0, 0.0, 0.0, -5.0]]


def pretend_device(monkeypatch, cc: tuple[int, int]) -> None:
    """CPU tensors stand for a CUDA device of compute capability ``cc`` (its table smem limit)."""
    import torch

    from kernels import device, validate

    info = device.DeviceInfo(cc, device.smem_optin_for(cc))
    monkeypatch.setattr(device, "device_info", lambda d=None: info)
    monkeypatch.setattr(validate, "DEVICE_TYPE", "cpu")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: type("S", (), {"cuda_stream": 0}))


class _RecordingLauncher:
    """Stands in for CuPy on a machine without a GPU: builds the real cubin, records the launch."""

    name = "recording"

    def __init__(self):
        self.calls = []

    def function(self, variant_name, extra, config, dtype, arch):
        from kernels.launch import _cubin

        return _cubin(variant_name, extra, config, dtype, arch)

    def launch(self, fn, grid, block, smem, args, stream):
        self.calls.append({"fn": fn, "grid": grid, "block": block, "smem": smem, "args": args})


@pytest.mark.nvcc
@pytest.mark.parametrize("family", ["sm80", "sm90"])
def test_nm_gemm_launches_the_family_kernel_with_its_geometry(family, monkeypatch):
    import torch

    from kernels import compress, ops
    from kernels.check import top2_of_4
    from kernels.registry import GEMM_FAMILIES

    rec = _RecordingLauncher()
    monkeypatch.setitem(ops.LAUNCHERS, "recording", rec)
    pretend_device(monkeypatch, (9, 0))
    g = torch.Generator().manual_seed(0)
    m, n, k = 200, 136, 320
    w = torch.randn(m, k, generator=g).bfloat16()
    comp = compress(top2_of_4(w), "2:4")
    b = torch.randn(n, k, generator=g).bfloat16()
    variant = VARIANTS[GEMM_FAMILIES[family]["sparse"]]
    cfg = variant.default()
    ops.nm_gemm(comp, b, cfg, launcher="recording", family=family)
    ops.nm_gemm(w, b, cfg, launcher="recording", family=family)
    (sp, de) = rec.calls
    c = cfg.to_dict()
    grid = (-(-n // c["BLOCK_N"]), -(-m // c["BLOCK_M"]), 1)
    assert sp["grid"] == de["grid"] == grid
    assert sp["block"][0] == variant.threads(c) and sp["smem"] == variant.smem(c)
    assert de["smem"] == VARIANTS[GEMM_FAMILIES[family]["dense"]].smem(c) < 232448
    assert sp["fn"][0].name.startswith(variant.name + "-sm_90a-")
    assert de["fn"][0].name.startswith(GEMM_FAMILIES[family]["dense"] + "-sm_90a-")
    ints = [v for kind, v in sp["args"] if kind == "i32"]
    assert ints == [m, n, k, 224, 320, 160, k, n]  # M N K MP KP lda ldb ldc


def test_nm_gemm_refuses_the_hopper_family_elsewhere(monkeypatch):
    import torch

    from kernels import ops

    pretend_device(monkeypatch, (8, 0))
    a = torch.randn(64, 64).bfloat16()
    cfg = VARIANTS["dense_gemm_sm90"].default()
    with pytest.raises(ValueError, match="family='sm80' runs on any sm_80"):
        ops.nm_gemm(a, a, cfg, family="sm90")
    with pytest.raises(ValueError, match="unknown kernel family"):
        ops.nm_gemm(a, a, cfg, family="sm70")


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize("name", ["nm_spmm", "nm_spmm_gather", "dense_gemm"])
def test_ldmatrix_builds_load_fragments_with_ldsm(name):
    """Issue 11.6: LDMATRIX=1 loads the mma fragments with ldmatrix.x4 (SASS LDSM), one
    instruction where the default issues four 32-bit shared loads; the MMA count is unchanged."""
    v = VARIANTS[name]
    base = v.default()
    plain = sass_instructions(compile_variant(v, base).cubin)
    ldsm = sass_instructions(compile_variant(v, Config.of({**base.to_dict(), "LDMATRIX": 1})).cubin)
    mma = v.sass_instruction

    def lds(counts):  # 32/64/128-bit shared loads, not the matrix loads
        return count_matching(counts, "LDS") - count_matching(counts, "LDSM")

    assert count_matching(plain, "LDSM") == 0 and count_matching(ldsm, "LDSM") > 0
    assert count_matching(ldsm, mma) == count_matching(plain, mma)
    assert lds(ldsm) < lds(plain) / 2, (lds(ldsm), lds(plain))


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize("name", ["nm_spmm_sm90", "nm_spmm_gather_sm90", "dense_gemm_sm90"])
def test_hopper_main_loop_issues_its_wgmmas_before_the_next_tiles_copies(name):
    """Issue 11.8: in the K loop the tile's wgmmas are issued first and the next tile's copies
    (LDGSTS, or the gather's loads and stores) follow before the wait, so their address
    arithmetic overlaps the tensor cores instead of sitting between two drains."""
    v = VARIANTS[name]
    ops = sass_sequence(compile_variant(v, v.default(), "sm_90a").cubin)
    first = next(i for i, op in enumerate(ops) if op.startswith("HGMMA"))
    wait = next(i for i in range(first, len(ops)) if ops[i].startswith("WARPGROUP.DEPBAR"))
    between = {op.split(".")[0] for op in ops[first:wait]}
    assert between & {"LDGSTS", "LDG"}, f"no copies between the wgmmas and their wait: {between}"


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize("trans_c", [0, 1])
@pytest.mark.parametrize("out_f32", [0, 1])
def test_staged_epilogue_writes_16_byte_vectors(trans_c, out_f32):
    """Issue 11.6: EPI_SMEM=1 stages the tile in shared memory and leaves in 128-bit stores, also
    for the transposed output both training GEMMs write; the direct epilogue has none."""
    v = VARIANTS["nm_spmm"]
    extra = {"TRANS_C": trans_c, "OUT_F32": out_f32}
    base = v.default().to_dict()
    direct, staged = (
        sass_instructions(compile_variant(v, Config.of({**base, "EPI_SMEM": e}), extra=extra).cubin)
        for e in (0, 1)
    )
    assert count_matching(direct, "STG.E.128") == 0
    assert count_matching(staged, "STG.E.128") > 0 and count_matching(staged, "STS") > 0


@pytest.mark.nvcc
def test_staged_epilogue_refuses_split_k():
    from kernels.build import CompileError

    v = VARIANTS["nm_spmm"]
    bad = Config.of({**v.default().to_dict(), "EPI_SMEM": 1, "SPLIT_K": 2})
    assert not v.space().allows(bad.to_dict())
    with pytest.raises(CompileError, match="EPI_SMEM"):
        compile_variant(v, bad, extra={"OUT_F32": 1})


def test_every_config_the_gpu_tests_launch_is_a_config_of_its_family():
    """The GPU tests' hand-made configs stay whole when a tunable is added (a config missing
    one is refused at launch, which only a GPU run would show)."""
    from test_kernels_gpu import CONFIGS, SM90_CORNERS, SMALL_SM90

    from kernels.registry import GEMM_FAMILIES

    for family, configs in CONFIGS.items():
        for role in ("sparse", "dense"):
            v = VARIANTS[GEMM_FAMILIES[family][role]]
            for name, config in configs.items():
                v.space().checked(config.to_dict(), f"{v.name} {name}")
    for corner in SM90_CORNERS:
        VARIANTS["nm_spmm_sm90"].space().checked({**SMALL_SM90.to_dict(), **corner}, "corner")


def _tma(v, **change):
    return Config.of({**v.default().to_dict(), "SMEM_PAD": 0, "TMA": 1, **change})


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize("name", ["nm_spmm_sm90", "dense_gemm_sm90"])
@pytest.mark.parametrize("block_k", [32, 64, 128])
def test_tma_builds_feed_the_wgmmas_from_the_copy_engine(name, block_k):
    """Issue 11.8: TMA=1 loads A and B with the tensor copy engine (UTMALDG, no cp.async), the
    metadata with bulk copies (UBLKCP), waits on mbarriers (SYNCS), hands the producer's
    registers to the consumers (USETMAXREG), does the same wgmma work as the cp.async build,
    and neither spills nor serialises its wgmmas."""
    v = VARIANTS[name]
    change = {"BLOCK_K": block_k, "STAGES": 3}
    if block_k == 128:
        change["BLOCK_M"] = 128
    base = Config.of({**v.default().to_dict(), **change})
    tma = _tma(v, **change)
    assert v.space().allows(tma.to_dict()) and v.threads(tma.to_dict()) == 384
    built = compile_variant(v, tma, "sm_90a")
    sass = sass_instructions(built.cubin)
    plain = sass_instructions(compile_variant(v, base, "sm_90a").cubin)
    assert count_matching(sass, "UTMALDG") > 0 and count_matching(sass, "LDGSTS") == 0
    assert count_matching(plain, "UTMALDG") == 0 and count_matching(plain, "LDGSTS") > 0
    assert (count_matching(sass, "UBLKCP") > 0) == v.sparse  # the metadata rows
    assert count_matching(sass, "SYNCS.PHASECHK") > 0  # mbarrier waits
    assert {"USETMAXREG.DEALLOC.CTAPOOL", "USETMAXREG.TRY_ALLOC.CTAPOOL"} <= set(sass)
    assert count_matching(sass, "HGMMA") == count_matching(plain, "HGMMA") > 0
    assert count_matching(sass, "LDL") == count_matching(sass, "STL") == 0
    assert "0 bytes spill stores" in built.ptxas_log
    assert not WGMMA_SERIALIZED.search(built.ptxas_log)


def test_tma_configs_are_refused_where_the_kernel_cannot_run_them():
    sparse, gather = VARIANTS["nm_spmm_sm90"], VARIANTS["nm_spmm_gather_sm90"]
    assert sparse.space().allows(_tma(sparse).to_dict())
    assert not gather.space().allows(_tma(gather).to_dict())  # the copy engine cannot gather
    assert not sparse.space().allows(_tma(sparse, SMEM_PAD=1).to_dict())
    assert not VARIANTS["dense_gemm_sm90"].space().allows(_tma(sparse, INFLIGHT=1).to_dict())
    assert VARIANTS["nm_spmm_sm90"].default()["TMA"] == 0  # until a GPU has checked it


@pytest.mark.nvcc
def test_nm_gemm_hands_a_tma_launch_its_two_tensor_maps(monkeypatch):
    import torch

    from kernels import compress, ops, tma
    from kernels.check import top2_of_4

    rec = _RecordingLauncher()
    monkeypatch.setitem(ops.LAUNCHERS, "recording", rec)
    pretend_device(monkeypatch, (9, 0))
    specs = []
    monkeypatch.setattr(tma, "encode", lambda spec, ptr, dtype: specs.append(spec) or bytes(128))
    m, n, k = 200, 136, 320
    g = torch.Generator().manual_seed(0)
    comp = compress(top2_of_4(torch.randn(m, k, generator=g)).bfloat16(), "2:4")
    b = torch.randn(n, k, generator=g).bfloat16()
    cfg = _tma(VARIANTS["nm_spmm_sm90"])
    ops.nm_gemm(comp, b, cfg, launcher="recording", family="sm90")
    (call,) = rec.calls
    assert call["block"][0] == 384 and [kind for kind, _ in call["args"][-2:]] == ["tmap"] * 2
    a_spec, b_spec = specs
    # compressed A: MP x KP/2 values, 64-byte rows per 64-deep tile; B: 128-byte rows
    assert (a_spec.rows, a_spec.inner, a_spec.pitch) == (224, 160, 320)
    assert (a_spec.box_rows, a_spec.swizzle, a_spec.box_inner) == (256, 64, 32)
    assert (b_spec.rows, b_spec.inner, b_spec.pitch) == (n, k, 2 * k)
    assert (b_spec.box_rows, b_spec.swizzle) == (128, 128)
    plain = VARIANTS["nm_spmm_sm90"].default()
    ops.nm_gemm(comp, b, plain, launcher="recording", family="sm90")
    assert all(kind != "tmap" for kind, _ in rec.calls[-1]["args"]) and len(specs) == 2


def test_tensor_map_specs_refuse_what_the_copy_engine_cannot_read():
    from kernels.tma import MapSpec

    ok = MapSpec("B", 320, 136, 640, 128, 128)
    ok.check(0x1000)
    with pytest.raises(ValueError, match="B is not 16-byte aligned"):
        ok.check(0x1008)
    with pytest.raises(ValueError, match="rows are 644 bytes apart.*multiple of 16"):
        MapSpec("B", 322, 136, 644, 128, 128).check(0x1000)
    with pytest.raises(ValueError, match="512-row, 128-byte box"):
        MapSpec("B", 320, 136, 640, 512, 128).check(0x1000)


def test_launchers_pass_tensor_maps_by_value_or_refuse_them():
    import numpy as np

    from kernels.launch import PycudaLauncher, _cupy_value

    value = _cupy_value("tmap", bytes(range(128)))
    assert isinstance(value, np.ndarray) and value.shape == (1,) and value.dtype.itemsize == 128
    assert value.tobytes() == bytes(range(128))
    with pytest.raises(ValueError, match="launcher='cupy'"):
        PycudaLauncher().launch(None, (1, 1, 1), (1, 1, 1), 0, [("tmap", bytes(128))], 0)


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize("ldmatrix", [0, 1])
def test_the_k_major_gather_copies_whole_rows(ldmatrix):
    """Issue 11.7: reading B K-major, the gather issues 16-byte cp.async (LDGSTS) only, where
    the N x K gather loads and stores 2-byte elements; with LDMATRIX its fragments come from
    transposed matrix loads (LDSM .MT88); the MMA work is the same."""
    kn, nk = VARIANTS["nm_spmm_gather_kn"], VARIANTS["nm_spmm_gather"]
    cfg = Config.of({**kn.default().to_dict(), "LDMATRIX": ldmatrix})
    built = compile_variant(kn, cfg)
    got = sass_instructions(built.cubin)
    old = sass_instructions(compile_variant(nk, cfg).cubin)
    assert count_matching(old, "LDG.E.U16") > 0 and count_matching(old, "STS.U16") > 0
    assert count_matching(got, "LDG.E.U16") == count_matching(got, "STS.U16") == 0
    assert count_matching(got, "LDGSTS") > count_matching(old, "LDGSTS")
    assert count_matching(got, "HMMA.SP") == count_matching(old, "HMMA.SP") > 0
    assert (count_matching(got, "LDSM.16.MT88") > 0) == bool(ldmatrix)
    assert "0 bytes spill stores" in built.ptxas_log


@pytest.mark.nvcc
def test_nm_gemm_takes_b_k_major_for_the_gather_only(monkeypatch):
    import torch

    from kernels import compress, ops
    from kernels.check import top2_of_4

    rec = _RecordingLauncher()
    monkeypatch.setitem(ops.LAUNCHERS, "recording", rec)
    pretend_device(monkeypatch, (8, 0))
    m, n, k = 200, 75, 320
    g = torch.Generator().manual_seed(0)
    comp = compress(top2_of_4(torch.randn(m, k, generator=g)).bfloat16(), "2:4")
    bt = torch.randn(k, n, generator=g).bfloat16()  # K x N
    perm = torch.randperm(k, generator=g).int()
    cfg = VARIANTS["nm_spmm_gather_kn"].default()
    out = ops.nm_gemm(comp, bt, cfg, perm=perm, launcher="recording", b_layout="kn")
    assert out.shape == (m, n)
    (call,) = rec.calls
    assert call["fn"][0].name.startswith("nm_spmm_gather_kn-")
    ints = [v for kind, v in call["args"] if kind == "i32"]
    assert ints == [m, n, k, 224, 320, 160, 80, n]  # ldb: N padded to 16-byte rows
    with pytest.raises(ValueError, match="b_layout='kn'.*pass perm, on family 'sm80'"):
        ops.nm_gemm(comp, bt, cfg, launcher="recording", b_layout="kn")
    pretend_device(monkeypatch, (9, 0))
    with pytest.raises(ValueError, match="b_layout='kn'.*family 'sm80'"):
        ops.nm_gemm(comp, bt, VARIANTS["nm_spmm_sm90"].default(), perm=perm, family="sm90",
                    launcher="recording", b_layout="kn")  # fmt: skip
    with pytest.raises(ValueError, match="b_layout must be 'nk'"):
        ops.nm_gemm(comp, bt, cfg, perm=perm, launcher="recording", b_layout="tn")
    with pytest.raises(ValueError, match="B has K=75, A has K=320"):
        ops.nm_gemm(comp, bt.t().contiguous(), cfg, perm=perm, launcher="recording", b_layout="kn")


def test_the_suite_measures_the_k_major_gather_beside_the_other_realisations():
    from suite.backends import BACKENDS
    from suite.problem import GemmProblem

    p = GemmProblem("nm_gemm", "bwd-data", 512, 512, 512, "bfloat16", "2:4", perm="greedy")
    sm80 = BACKENDS["bimask_sparse"].space(p).tunables["perm_realisation"]
    sm90 = BACKENDS["bimask_sparse_sm90"].space(p).tunables["perm_realisation"]
    assert set(sm80) == {"in_kernel", "in_kernel_kn", "separate_op", "physical"}
    assert "in_kernel_kn" not in sm90


def test_the_k_major_gather_space_sizes_its_own_b_tile():
    """Its B tile is BLOCK_K x (BLOCK_N + pad): a config that fits that way is in its space even
    where the N x K gather's tile would not fit (the review's 64 x 256 x 64 example), and the
    suite's in_kernel_kn rows keep to what that variant launches."""
    from suite.backends import BACKENDS
    from suite.problem import GemmProblem

    kn, nk = VARIANTS["nm_spmm_gather_kn"], VARIANTS["nm_spmm_gather"]
    c = {**kn.default().to_dict(), "BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 64, "WARPS_M": 1,
         "WARPS_N": 4, "STAGES": 4, "SMEM_PAD": 8}  # fmt: skip
    assert kn.smem(c) <= 163 * 1024 < nk.smem(c)
    assert kn.space().allows(c) and not nk.space().allows(c)
    p = GemmProblem("nm_gemm", "bwd-data", 512, 512, 512, "bfloat16", "2:4", perm="greedy")
    rows = [x.to_dict() for x in BACKENDS["bimask_sparse"].space(p).configs()]
    kn_rows = [r for r in rows if r["perm_realisation"] == "in_kernel_kn"]
    assert kn_rows and all(
        kn.space().allows({k: v for k, v in r.items() if k != "perm_realisation"}) for r in kn_rows
    )
