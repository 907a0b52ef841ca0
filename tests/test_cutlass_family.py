"""The CUTLASS sm90 sparse family on a CPU: one build per schedule for sm_90a with HGMMA.SP in its
SASS, the C entries' argument checks (loaded with ctypes, no driver), the space's rules applied
before anything compiles, the build cache, and where the headers come from."""

from __future__ import annotations

import subprocess

import pytest
import torch

from kernels import artifacts, build, cutlass_family, cutlass_headers
from kernels.build import CompileError, compile_variant, count_matching, sass_instructions
from kernels.cutlass_lib import CutlassError, RunOptions, check_config, library
from kernels.registry import VARIANTS
from kernels.space import Config

V = VARIANTS["cutlass_sm90_sparse"]
DEFAULT = V.default().to_dict()
# one representative config per kernel schedule (the quick space's)
REPRESENTATIVE = {
    "cooperative": DEFAULT,
    "basic": {**DEFAULT, "SCHEDULE": 0},
    "pingpong": {**DEFAULT, "SCHEDULE": 1, "TILE_M": 64},
}
needs_build = [pytest.mark.nvcc, pytest.mark.cutlass]


def _lib(config: dict = DEFAULT):
    return library(Config.of(config), "bfloat16")


@pytest.mark.parametrize("schedule", sorted(REPRESENTATIVE))
@pytest.mark.nvcc
@pytest.mark.cutlass
def test_one_config_per_schedule_builds_and_runs_on_sparse_tensor_cores(schedule):
    config = Config.of(REPRESENTATIVE[schedule])
    built = compile_variant(V, config, "sm_90a", "bfloat16", {"OUT_F32": 0})
    sass = sass_instructions(built.cubin)
    assert count_matching(sass, "HGMMA.SP") > 0, sass
    assert count_matching(sass, "UTMALDG") > 0  # TMA loads: the warp-specialised mainloop
    assert built.spill_bytes == 0
    facts = _lib(REPRESENTATIVE[schedule]).facts()
    assert facts["SCHEDULE"] == config["SCHEDULE"] and facts["TILE_M"] == config["TILE_M"]
    assert facts["CUTLASS_VERSION"] >= 400 and facts["STAGES"] >= 2


@pytest.mark.slow
@pytest.mark.nvcc
@pytest.mark.cutlass
def test_stream_k_cooperative_builds():
    config = Config.of({**DEFAULT, "STREAM_K": 1, "SPLITS": 2})
    built = compile_variant(V, config, "sm_90a", "bfloat16", {"OUT_F32": 0})
    assert count_matching(sass_instructions(built.cubin), "HGMMA.SP") > 0


@pytest.mark.slow
@pytest.mark.nvcc
@pytest.mark.cutlass
def test_the_excluded_accumulator_corner_does_spill_so_the_rule_is_needed():
    """Pingpong 128 x 256: 256 fp32 accumulators a thread; ptxas spilled 2,224 bytes."""
    config = Config.of({**DEFAULT, "SCHEDULE": 1, "TILE_N": 256})
    assert not V.space().allows(config.to_dict())
    assert compile_variant(V, config, "sm_90a", "bfloat16", {"OUT_F32": 0}).spill_bytes > 0


@pytest.mark.nvcc
@pytest.mark.cutlass
def test_a_second_build_is_served_by_the_cache_without_nvcc(monkeypatch):
    compile_variant(V, V.default(), "sm_90a", "bfloat16", {"OUT_F32": 0})

    def no_nvcc(*args, **kwargs):
        raise AssertionError(f"nvcc ran: {args[0][:2]}")

    monkeypatch.setattr(subprocess, "run", no_nvcc)
    again = compile_variant(V, V.default(), "sm_90a", "bfloat16", {"OUT_F32": 0})
    assert again.cached and again.cubin.suffix == ".so"
    # the run-time tunables are arguments of the entry: another raster is the same build
    other = Config.of({**DEFAULT, "RASTER": 2, "SWIZZLE": 4})
    assert compile_variant(V, other, "sm_90a", "bfloat16", {"OUT_F32": 0}).cubin == again.cubin


@pytest.mark.nvcc
@pytest.mark.cutlass
def test_the_gemm_entry_rejects_bad_arguments_without_a_gpu():
    lib, run = _lib(), RunOptions()
    good = (0x1000, 0x2000, 0x3000, 0x4000, 256, 256, 256, 256, 256)
    lib.check(*good, run)  # passes: the checks touch no CUDA
    cases = {
        1: ((0, *good[1:]), run),  # null A values
        4: ((0x1008, *good[1:]), run),  # misaligned
        2: ((*good[:4], 0, 256, 256, 256, 256), run),  # M = 0
        3: ((*good[:4], 256, 256, 250, 256, 256), run),  # K % 16
        12: ((*good[:4], 256, 36, 256, 256, 40), run),  # N % 8
        5: ((*good[:4], 256, 256, 256, 128, 256), run),  # ldb < K
        6: (good, RunOptions(raster=3)),
    }
    for status, (args, options) in cases.items():
        with pytest.raises(CutlassError, match=f"status {status}:") as err:
            lib.check(*args, options)
        assert err.value.status == status
    with pytest.raises(CutlassError, match="status 6:.*stream-K"):
        lib.check(*good, RunOptions(splits=2))  # split counts need the stream-K build
    lib.can_implement(256, 256, 256, 256, 256, run)  # CUTLASS's own check, host only
    # the first CUDA call reports the missing driver as a status, it does not crash
    with pytest.raises(CutlassError, match="status 11:"):
        lib.workspace_size(256, 256, 256, 256, 256, run)


@pytest.mark.nvcc
@pytest.mark.cutlass
def test_the_compress_entry_sizes_its_outputs_and_checks_first():
    lib = _lib()
    values, meta = lib.compressed_sizes(100, 256)
    assert values == 100 * 128  # M x K/2, packed
    assert meta >= 100 * 256 // 8 and meta % 64 == 0  # 4 bits per kept pair, padded
    with pytest.raises(CutlassError, match="status 3:"):
        lib.compressed_sizes(100, 40)
    with pytest.raises(CutlassError, match="status 5:"):
        lib.compress_check(0x1000, 64, 256, 128, 0x2000, 0x3000)  # lda < K
    with pytest.raises(CutlassError, match="status 1:"):
        lib.compress_check(0x1000, 64, 256, 256, 0, 0x3000)


@pytest.mark.nvcc
@pytest.mark.cutlass
def test_torch_level_checks_come_before_any_launch(monkeypatch):
    from kernels import validate
    from kernels.cutlass_ops import CutlassSparse, cutlass_gemm

    monkeypatch.setattr(validate, "DEVICE_TYPE", "cpu")  # pretend: only metadata is read
    a = CutlassSparse(
        torch.zeros(128, 128, dtype=torch.bfloat16),
        torch.zeros(4096, dtype=torch.uint8),
        128,
        256,
        "bfloat16",
        64,
    )
    b = torch.zeros(64, 256, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="metadata block of 64.*TILE_K=128"):
        cutlass_gemm(a, b, Config.of({**DEFAULT, "TILE_K": 128}))
    with pytest.raises(TypeError, match="compressed as bfloat16"):
        cutlass_gemm(a, b.half(), V.default())
    with pytest.raises(ValueError, match="K axis must be contiguous"):
        cutlass_gemm(a, torch.zeros(256, 64, dtype=torch.bfloat16).t(), V.default())
    with pytest.raises(CutlassError, match="status 11:"):  # every check passed; no driver
        cutlass_gemm(a, b, V.default())


# configs CUTLASS refuses (static_assert) or builds only to spill, each with its rule
EXCLUDED = {
    "cooperative with TILE_M 64": {**DEFAULT, "TILE_M": 64},
    "pingpong with stream-K": {**DEFAULT, "SCHEDULE": 1, "STREAM_K": 1},
    "basic with stream-K": {**DEFAULT, "SCHEDULE": 0, "STREAM_K": 1},
    "splits without stream-K": {**DEFAULT, "SPLITS": 2},
    "256 x 256 accumulators": {**DEFAULT, "TILE_M": 256, "TILE_N": 256},
    "pingpong 128 x 256 accumulators": {**DEFAULT, "SCHEDULE": 1, "TILE_N": 256},
    "basic kernel with a raster": {**DEFAULT, "SCHEDULE": 0, "RASTER": 1},
}


@pytest.mark.parametrize("why", sorted(EXCLUDED))
def test_refused_combinations_are_excluded_before_compiling(why, monkeypatch):
    config = EXCLUDED[why]
    assert not V.space().allows(config)
    assert Config.of(config) not in set(V.space().configs())

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled an excluded config")

    monkeypatch.setattr(build, "compile_variant", no_compile)
    monkeypatch.setattr("kernels.cutlass_lib.compile_variant", no_compile)
    with pytest.raises(ValueError, match="breaks a restriction"):
        library(Config.of(config))


def test_the_space_its_default_and_quick_configs_are_valid():
    space = V.space()
    assert space.allows(DEFAULT) and len(space) > 1000
    assert {c["SCHEDULE"] for c in space.configs()} == {0, 1, 2}
    from kernels import aot

    builds = aot.cutlass_builds((9, 0))
    assert {b.config["SCHEDULE"] for b in builds} == {0, 1, 2}
    assert all(space.allows(b.config.to_dict()) for b in builds)
    assert aot.cutlass_builds((8, 0)) == []  # sm_90a code only
    for config in (Config.of(c) for c in REPRESENTATIVE.values()):
        check_config(config)
        assert aot.Build(V.name, config, "bfloat16", "sm_90a", (("OUT_F32", 0),)) in builds
    with pytest.raises(ValueError, match="must set exactly"):
        check_config(Config.of({"TILE_M": 128}))


def test_missing_headers_are_named_with_the_install_hint_before_any_file(tmp_path, monkeypatch):
    monkeypatch.setenv(cutlass_headers.ENV, str(tmp_path / "nowhere"))
    assert "BIMASK_CUTLASS_DIR" in cutlass_headers.missing_reason()
    assert cutlass_headers.version() is None
    monkeypatch.delenv(cutlass_headers.ENV)
    monkeypatch.setattr(cutlass_headers.importlib.util, "find_spec", lambda name: None)
    assert "pip install '.[cutlass]'" in cutlass_headers.missing_reason()
    if not build.nvcc_path():
        return
    monkeypatch.setattr(build, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(CompileError, match=r"pip install '\.\[cutlass\]'"):
        compile_variant(V, V.default(), "sm_90a")
    assert not (tmp_path / "cache").exists()


def test_a_host_without_cutlass_runs_the_build_its_cache_holds(tmp_path, monkeypatch):
    """A GPU host with the carried cache and no headers: the key's CUTLASS version is taken
    from the build the manifest records."""
    monkeypatch.setattr(build, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(cutlass_headers, "version", lambda: "cutlass-4.2.0")
    path, key = build.cache_entry(V, V.default(), "sm_90a", "bfloat16", {"OUT_F32": 0})
    assert key["dependency"] == "cutlass-4.2.0"
    path.write_bytes(b"a shared library")
    artifacts.record(tmp_path, path, key)
    monkeypatch.setattr(cutlass_headers, "version", lambda: None)
    again, key2 = build.cache_entry(V, V.default(), "sm_90a", "bfloat16", {"OUT_F32": 0})
    assert (again, key2) == (path, key)
    monkeypatch.setattr(build, "nvcc_path", lambda: None)
    assert compile_variant(V, V.default(), "sm_90a", "bfloat16", {"OUT_F32": 0}).cached


def test_the_family_is_a_suite_backend_distinct_from_torchs_cutlass():
    from suite.backends import BACKENDS
    from suite.compressors import compressor_of
    from suite.problem import GemmProblem

    ours, torchs = BACKENDS["cutlass_sm90"], BACKENDS["cutlass"]
    assert "sm90" in ours.description and "not cutlass_sm90" in torchs.description
    assert compressor_of("cutlass_sm90") == "cutlass_sm90"
    bwd = GemmProblem("nm_gemm", "bwd-data", 512, 512, 512, "bfloat16", "2:4", perm="greedy")
    fwd = GemmProblem("nm_gemm", "fwd", 512, 512, 512, "bfloat16", "2:4")
    assert ours.space(bwd).tunables["perm_realisation"] == ("gather", "physical")
    quick = ours.quick_space(fwd).configs()
    assert 1 < len(quick) <= 8
    full = ours.space(fwd)
    assert all(full.allows(c.to_dict()) for c in quick)
    assert ours.supports(GemmProblem("nm_gemm", "fwd", 64, 64, 64, "bfloat16", "4:8"))
    assert cutlass_family.SCHEDULES[DEFAULT["SCHEDULE"]] == "Cooperative"


def test_kernels_build_makes_every_library_the_quick_space_launches():
    """What ``kernels build --for-device H200`` makes is what the backend's quick space asks."""
    from kernels import aot
    from suite.backends import BACKENDS
    from suite.backends.cutlass_sm90 import kernel_config
    from suite.problem import GemmProblem

    builds = aot.cutlass_builds((9, 0))
    assert set(builds) <= set(aot.run_builds((9, 0)))
    made = {build.cache_entry(V, b.config, b.arch, b.dtype, dict(b.extra))[0] for b in builds}
    problem = GemmProblem("nm_gemm", "bwd-data", 512, 512, 512, "bfloat16", "2:4", perm="greedy")
    for config in BACKENDS["cutlass_sm90"].quick_space(problem).configs():
        path, _ = build.cache_entry(V, kernel_config(config), "sm_90a", "bfloat16", {"OUT_F32": 0})
        assert path in made, config


def test_kernels_build_makes_every_library_the_gpu_tests_launch():
    """tests/test_cutlass_gpu.py and ``kernels check`` launch only what a first look's cache
    holds: every schedule in bfloat16, the default in float16, the float32-output builds."""
    from test_cutlass_gpu import CONFIGS

    from kernels import aot

    made = {
        build.cache_entry(V, b.config, b.arch, b.dtype, dict(b.extra))[0]
        for b in aot.run_builds((9, 0))
    }
    asked = [(CONFIGS[name], "bfloat16", 0) for name in CONFIGS]
    asked += [(DEFAULT, "float16", 0), (DEFAULT, "bfloat16", 1)]  # float16; float32 output
    asked += [({**DEFAULT, "STREAM_K": 1}, "bfloat16", 1)]  # its SPLITS is a run-time argument
    for config, dtype, out_f32 in asked:
        runtime = {"RASTER": 0, "SWIZZLE": 1, "SPLITS": 1}
        c = Config.of({**config, **runtime})
        path, _ = build.cache_entry(V, c, "sm_90a", dtype, {"OUT_F32": out_f32})
        assert path in made, (config, dtype, out_f32)
