"""Tensor maps for the copy engine (TMA) of the sm90 kernels' ``TMA=1`` path.

A tensor map describes one 2-D operand in global memory (inner extent, rows, row pitch) and the
box one copy moves into shared memory (``swizzle`` bytes wide, ``rows`` tall) with the copy
engine's swizzle of that width. :func:`operand_maps` says which maps a launch needs, from the
same arithmetic as ``kernels/cuda/nm_gemm_sm90.cu`` (a tile row of BLOCK_K dense columns, the
widest swizzle the row allows, up to 128 bytes); :func:`encode` has the driver
(``cuTensorMapEncodeTiled`` in libcuda) write the 128 opaque bytes the kernel takes by value.
Everything but ``encode`` is arithmetic, checked on the CPU.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache

MAP_BYTES = 128  # sizeof(CUtensorMap)
# cuda.h's enums (CUtensorMapDataType, CUtensorMapSwizzle)
DATA_TYPE = {"bfloat16": 9, "float16": 6}
SWIZZLE = {32: 1, 64: 2, 128: 3}
_MAX_ROWS = 256  # a box dimension is at most 256 elements
_MAX_PITCH = 1 << 40  # global strides must be below 2^40 bytes


@dataclass(frozen=True)
class MapSpec:
    """One operand's tensor map: ``inner`` elements a row (the K extent), ``rows`` rows of
    ``pitch`` bytes; boxes of ``swizzle`` bytes x ``box_rows`` rows."""

    name: str
    inner: int
    rows: int
    pitch: int
    box_rows: int
    swizzle: int

    @property
    def box_inner(self) -> int:
        return self.swizzle // 2  # 16-bit elements

    def check(self, address: int) -> None:
        """A ValueError naming what the copy engine refuses (the driver would say only
        CUDA_ERROR_INVALID_VALUE)."""
        if address % 16:
            raise ValueError(f"TMA: {self.name} is not 16-byte aligned (address {address:#x})")
        if self.pitch % 16 or not 0 < self.pitch < _MAX_PITCH:
            raise ValueError(
                f"TMA: {self.name}'s rows are {self.pitch} bytes apart; the copy engine needs a "
                "multiple of 16 below 2^40 (pad its leading dimension to a multiple of 8)"
            )
        if not 0 < self.inner < 1 << 32 or not 0 < self.rows < 1 << 32:
            raise ValueError(f"TMA: {self.name} is {self.rows} x {self.inner}; each side 1..2^32")
        if self.box_rows > _MAX_ROWS or self.swizzle not in SWIZZLE:
            raise ValueError(f"TMA: a {self.box_rows}-row, {self.swizzle}-byte box is not valid")


def row_bytes(block_k: int, sparse: bool) -> tuple[int, int]:
    """(A's, B's) bytes of one tile row per K tile: compressed A holds BLOCK_K/2 values."""
    return (block_k if sparse else 2 * block_k), 2 * block_k


def swizzle_of(row: int) -> int:
    return min(row, 128)


def operand_maps(config, sparse: bool, m: int, n: int, k: int, mp: int, kp: int, lda: int,
                 ldb: int) -> tuple[MapSpec, MapSpec]:  # fmt: skip
    """The A and B maps of one launch: A's compressed values (MP x KP/2, pitch KP/2 elements)
    or dense A (M x K, pitch lda); B (N x K, pitch ldb). The kernel's tiles are BLOCK_M (A) and
    BLOCK_N (B) rows by one swizzle width per box."""
    a_row, b_row = row_bytes(int(config["BLOCK_K"]), sparse)
    if sparse:
        a = MapSpec("A (compressed values)", kp // 2, mp, kp, int(config["BLOCK_M"]),
                    swizzle_of(a_row))  # fmt: skip
    else:
        a = MapSpec("A", k, m, 2 * lda, int(config["BLOCK_M"]), swizzle_of(a_row))
    b = MapSpec("B", k, n, 2 * ldb, int(config["BLOCK_N"]), swizzle_of(b_row))
    return a, b


@cache
def _encoder():
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        raise RuntimeError(f"TMA needs the CUDA driver (libcuda.so.1): {err}") from None
    fn = lib.cuTensorMapEncodeTiled
    u32, u64 = ctypes.c_uint32, ctypes.c_uint64
    fn.argtypes = [
        ctypes.c_void_p,  # CUtensorMap*
        ctypes.c_int,  # data type
        u32,  # rank
        ctypes.c_void_p,  # global address
        ctypes.POINTER(u64),  # dims
        ctypes.POINTER(u64),  # strides (rank - 1)
        ctypes.POINTER(u32),  # box
        ctypes.POINTER(u32),  # element strides
        ctypes.c_int,  # interleave: none
        ctypes.c_int,  # swizzle
        ctypes.c_int,  # L2 promotion
        ctypes.c_int,  # out-of-bounds fill: zeros
    ]
    fn.restype = ctypes.c_int
    return fn


_L2_256B = 3


def encode(spec: MapSpec, address: int, dtype: str) -> bytes:
    """The driver's 128-byte tensor map of ``spec`` over the tensor at ``address``."""
    spec.check(address)
    buf = ctypes.create_string_buffer(MAP_BYTES + 64)  # the map must be 64-byte aligned
    base = ctypes.addressof(buf)
    aligned = base + (-base % 64)
    u32, u64 = ctypes.c_uint32, ctypes.c_uint64
    dims = (u64 * 2)(spec.inner, spec.rows)
    strides = (u64 * 1)(spec.pitch)
    box = (u32 * 2)(spec.box_inner, spec.box_rows)
    ones = (u32 * 2)(1, 1)
    status = _encoder()(
        aligned, DATA_TYPE[dtype], 2, address, dims, strides, box, ones, 0,
        SWIZZLE[spec.swizzle], _L2_256B, 0,
    )  # fmt: skip
    if status != 0:
        raise ValueError(f"TMA: cuTensorMapEncodeTiled refused {spec} (CUresult {status})")
    return ctypes.string_at(aligned, MAP_BYTES)


__all__ = ["MAP_BYTES", "MapSpec", "encode", "operand_maps", "row_bytes", "swizzle_of"]
