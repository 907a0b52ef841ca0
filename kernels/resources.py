"""What one GEMM config needs of a device: dynamic shared memory per block and registers per
thread, by the same arithmetic as the kernel sources (kernels/cuda/nm_gemm_sm80.cu, _sm90.cu)."""

from __future__ import annotations


def gemm_smem(c: dict, sparse: bool) -> int:
    """Dynamic shared memory of an nm_gemm_sm80.cu config: STAGES x (A + B + metadata), or the
    staged output tile if EPI_SMEM needs more."""
    pad = c["SMEM_PAD"]
    a = c["BLOCK_M"] * ((c["BLOCK_K"] // 2 if sparse else c["BLOCK_K"]) + pad) * 2
    if c.get("B_KMAJOR", 0):  # B stored K-major: BLOCK_K rows of BLOCK_N (+ pad)
        b = c["BLOCK_K"] * (c["BLOCK_N"] + pad) * 2
    else:
        b = c["BLOCK_N"] * (c["BLOCK_K"] + pad) * 2
    e = (c["BLOCK_M"] // 32) * (c["BLOCK_K"] // 32) * 32 * 4 if sparse else 16
    stages = c["STAGES"] * (a + b + e)
    if not c.get("EPI_SMEM", 0):
        return stages
    # the output tile staged in the same memory: fp32 (the larger output type) plus 16 bytes of
    # padding per row, rows along either axis (TRANS_C swaps them)
    tile = c["BLOCK_M"] * c["BLOCK_N"] * 4 + max(c["BLOCK_M"], c["BLOCK_N"]) * 16
    return max(stages, tile)


def wgmma_smem(c: dict, sparse: bool) -> int:
    """Dynamic shared memory of an nm_gemm_sm90.cu config: core-matrix tiles, 8 rows x 16 bytes
    each, LBO = 128 (+16 with SMEM_PAD) bytes apart along K; with TMA, swizzled tiles of whole
    rows, each stage rounded up to 1 KB, its two mbarriers, and 1 KB to align the base by."""
    if c.get("TMA", 0):
        a_row = c["BLOCK_K"] if sparse else 2 * c["BLOCK_K"]
        e = (c["BLOCK_M"] // 32) * (c["BLOCK_K"] // 32) * 32 * 4 if sparse else 0
        stage = c["BLOCK_M"] * a_row + c["BLOCK_N"] * 2 * c["BLOCK_K"] + e
        return c["STAGES"] * (-(-stage // 1024) * 1024 + 16) + 1024
    lbo = 128 + 16 * c["SMEM_PAD"]
    a = (c["BLOCK_M"] // 8) * (c["BLOCK_K"] // (16 if sparse else 8)) * lbo
    b = (c["BLOCK_N"] // 8) * (c["BLOCK_K"] // 8) * lbo
    e = (c["BLOCK_M"] // 32) * (c["BLOCK_K"] // 32) * 32 * 4 if sparse else 16
    return c["STAGES"] * (a + b + e)


# Registers a thread of nm_gemm_sm80.cu needs besides its accumulators and B fragments (the A
# fragment, the metadata word, addresses, stage and loop state). Measured with ptxas (CUDA 13.0,
# sm_80): at 512 threads, where __launch_bounds__ leaves 128 registers, 128 accumulators + 32 B
# fragment registers (256x256 tiles, 4x4 warps) spill 1,872 bytes, 64 + 32 (128x256) 36 bytes,
# and 64 + 16 (256x128) 4 bytes with four stages (none with two): so under 48 are left. At 256
# threads (255 registers) 128 + 64 (128x256 tiles, 4x2 warps) fits without spills.
REG_RESERVE = 56


def register_budget(threads: int) -> int:
    """Registers per thread ptxas may use under __launch_bounds__(threads): 64K per SM / block."""
    return min(255, 65536 // threads)


def mma_registers(c: dict) -> int:
    """Accumulators (MT x NT x 4 floats) + B fragments (NT x 4) per thread of an sm80 config."""
    mt, nt = c["BLOCK_M"] // c["WARPS_M"] // 16, c["BLOCK_N"] // c["WARPS_N"] // 8
    return mt * nt * 4 + nt * 4
