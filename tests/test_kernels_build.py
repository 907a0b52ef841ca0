"""Every registered variant builds for sm_80 and sm_90a, and its SASS holds the MMA it claims.

The sparse check fails if someone replaces the sparse path by a dense one.
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from kernels import nvrtc
from kernels.__main__ import main as kernels_main
from kernels.build import _tool, compile_variant, count_matching, sass_instructions
from kernels.registry import VARIANTS

needs_sass = pytest.mark.skipif(
    not (_tool("cuobjdump") and _tool("nvdisasm")),
    reason="cuobjdump/nvdisasm missing: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm",
)


@pytest.mark.nvcc
@needs_sass
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_compiles_and_holds_its_mma(name, arch):
    v = VARIANTS[name]
    built = compile_variant(v, v.default(), arch)
    sass = sass_instructions(built.cubin)
    sparse_mma = count_matching(sass, "HMMA.SP")
    if v.sparse:
        assert sparse_mma > 0, f"{name}: no sparse MMA in the SASS"
    else:
        assert sparse_mma == 0
    if v.sass_instruction:
        assert count_matching(sass, v.sass_instruction) > 0


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
@pytest.mark.parametrize("name", ["nm_spmm", "dense_gemm", "nm_compress"])
def test_nvrtc_builds_the_same_instructions(name):
    v = VARIANTS[name]
    cubin = Path(tempfile.mkdtemp()) / "k.cubin"
    cubin.write_bytes(nvrtc.compile_cubin(v, v.default(), "sm_80"))
    nvrtc_sass = sass_instructions(cubin)
    nvcc_sass = sass_instructions(compile_variant(v, v.default()).cubin)
    assert count_matching(nvrtc_sass, "HMMA") == count_matching(nvcc_sass, "HMMA")
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
