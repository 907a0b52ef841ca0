"""mma.sp::ordered_metadata needs CUDA 12.5+ (PTX ISA 8.5): the sm80 source picks it by the CUDA
version macros, and plain mma.sp before that. Checked with the host preprocessor (any version),
nvcc's preprocessor (this toolkit) and one nvcc build with the plain form (its SASS)."""

import shutil
import subprocess

import pytest

from kernels.build import _tool, compile_variant, count_matching, nvcc_path, sass_instructions
from kernels.registry import CUDA_DIR, VARIANTS

ORDERED, PLAIN = '"mma.sp::ordered_metadata"', '"mma.sp"'


def _mma_sp_op(*defines: str) -> str:
    """What MMA_SP_OP expands to in ptx_features.cuh under these -D defines."""
    src = '#include "ptx_features.cuh"\nMMA_SP_OP\n'
    cmd = [shutil.which("cpp"), "-P", f"-I{CUDA_DIR}", *(f"-D{d}" for d in defines), "-"]
    out = subprocess.run(cmd, input=src, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


@pytest.mark.skipif(not shutil.which("cpp"), reason="no host C preprocessor (cpp)")
@pytest.mark.parametrize(
    "major,minor,want",
    [(11, 8, PLAIN), (12, 0, PLAIN), (12, 4, PLAIN), (12, 5, ORDERED), (12, 8, ORDERED)]
    + [(13, 0, ORDERED)],
)
def test_the_cuda_version_picks_the_mma_sp_form(major, minor, want):
    got = _mma_sp_op(f"__CUDACC_VER_MAJOR__={major}", f"__CUDACC_VER_MINOR__={minor}")
    assert got == want


@pytest.mark.skipif(not shutil.which("cpp"), reason="no host C preprocessor (cpp)")
def test_no_version_macro_means_plain_and_the_override_wins():
    assert _mma_sp_op() == PLAIN
    old = ("__CUDACC_VER_MAJOR__=12", "__CUDACC_VER_MINOR__=0")
    assert _mma_sp_op(*old, "MMA_SP_ORDERED=1") == ORDERED
    assert _mma_sp_op("__CUDACC_VER_MAJOR__=13", "MMA_SP_ORDERED=0") == PLAIN


def _preprocessed(*defines: str) -> str:
    cmd = [nvcc_path(), "-E", "-x", "cu", "-arch=sm_80", *(f"-D{d}" for d in defines)]
    cmd.append(str(VARIANTS["nm_spmm"].path))
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


@pytest.mark.nvcc
def test_nvcc_here_preprocesses_the_ordered_form_and_the_override_the_plain_one():
    ordered = _preprocessed()
    assert f'{ORDERED} ".sync.aligned.m16n8k32' in ordered
    plain = _preprocessed("MMA_SP_ORDERED=0")
    assert f'{PLAIN} ".sync.aligned.m16n8k32' in plain and ORDERED not in plain


@pytest.mark.nvcc
@pytest.mark.skipif(not (_tool("cuobjdump") and _tool("nvdisasm")), reason="no cuobjdump")
def test_the_plain_mma_sp_still_builds_sparse_tensor_core_instructions():
    v = VARIANTS["nm_spmm"]
    ordered = sass_instructions(compile_variant(v, v.default(), "sm_80").cubin)
    plain = sass_instructions(
        compile_variant(v, v.default(), "sm_80", extra={"MMA_SP_ORDERED": 0}).cubin
    )
    assert count_matching(plain, "HMMA.SP") == count_matching(ordered, "HMMA.SP") > 0
