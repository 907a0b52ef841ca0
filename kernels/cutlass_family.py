"""The CUTLASS sm90 sparse family's tunables, the rules that keep out what CUTLASS refuses (or
builds only to spill), its default and its quick space. ``kernels.registry`` registers the
variant from these; ``kernels/cuda/cutlass_sm90_sparse.cu`` reads the build-time ones as -D.

Where each rule comes from (CUTLASS 4.2, checked by compiling, see tests/test_cutlass_family.py):
- the cooperative schedule splits the tile's M over two consumer warpgroups and static_asserts
  TILE_M >= 128 (sm90_gemm_tma_warpspecialized_cooperative.hpp);
- pingpong and the basic warp-specialised kernel take no stream-K scheduler (static_assert in
  the pingpong kernel; the basic kernel takes the default scheduler only);
- each consumer warpgroup holds its share of the tile as fp32 accumulators: more than 128 per
  thread leave no registers (pingpong/basic: the whole tile per warpgroup; cooperative: half);
- the mainloop needs two pipeline stages (static_assert Stages >= 2) in 227 KB beside the epilogue.
"""

from __future__ import annotations

KB = 1024
SMEM_SM90 = 227 * KB
SCHEDULES = {0: "KernelTmaWarpSpecialized", 1: "Pingpong", 2: "Cooperative"}
EPILOGUES = {0: "NoSmemWarpSpecialized", 1: "TmaWarpSpecialized"}
RASTERS = {0: "heuristic", 1: "along M", 2: "along N"}

TUNABLES: dict[str, tuple] = {
    "TILE_M": (64, 128, 256),
    "TILE_N": (64, 128, 256),
    "TILE_K": (64, 128),
    "CLUSTER_M": (1, 2),
    "CLUSTER_N": (1, 2),
    "SCHEDULE": tuple(SCHEDULES),
    "EPILOGUE": tuple(EPILOGUES),
    "STREAM_K": (0, 1),
    # run time (arguments of the entry; one build serves every value)
    "RASTER": tuple(RASTERS),
    "SWIZZLE": (1, 2, 4, 8),
    "SPLITS": (1, 2, 4),
}
RUNTIME = ("RASTER", "SWIZZLE", "SPLITS")

# The cooperative 128x128x64 tile with a TMA epilogue: CUTLASS's own choice for 16-bit sparse
# (its auto schedule picks cooperative for TILE_M >= 128).
DEFAULT = {
    "TILE_M": 128,
    "TILE_N": 128,
    "TILE_K": 64,
    "CLUSTER_M": 1,
    "CLUSTER_N": 1,
    "SCHEDULE": 2,
    "EPILOGUE": 1,
    "STREAM_K": 0,
    "RASTER": 0,
    "SWIZZLE": 1,
    "SPLITS": 1,
}


def accumulators_per_thread(c: dict) -> int:
    """fp32 accumulators each consumer thread holds (a warpgroup is 128 threads)."""
    warpgroups_per_tile = 2 if c["SCHEDULE"] == 2 else 1
    return c["TILE_M"] * c["TILE_N"] // (128 * warpgroups_per_tile)


def stage_bytes(c: dict, elem: int = 2) -> int:
    """Shared memory of one mainloop stage: compressed A (half of M x K), B, metadata (4 bits per
    kept pair: M x K / 8 bytes) and the stage's barrier."""
    m, n, k = c["TILE_M"], c["TILE_N"], c["TILE_K"]
    return m * k // 2 * elem + n * k * elem + m * k // 8 + 16


def epilogue_bytes(c: dict, out_elem: int = 4) -> int:
    """An upper bound of the TMA epilogue's shared memory (two 128 x 32 staging tiles of D)."""
    return 2 * 128 * 32 * out_elem if c["EPILOGUE"] else 0


RESTRICTIONS = (
    lambda c: c["SCHEDULE"] != 2 or c["TILE_M"] >= 128,
    lambda c: c["STREAM_K"] == 0 or c["SCHEDULE"] == 2,
    lambda c: c["SPLITS"] == 1 or c["STREAM_K"] == 1,
    lambda c: accumulators_per_thread(c) <= 128,
    lambda c: 2 * stage_bytes(c) + epilogue_bytes(c) <= SMEM_SM90,
    # the basic kernel launches one CTA per tile: the persistent scheduler's raster and swizzle
    # do not apply, so only their defaults are in the space
    lambda c: c["SCHEDULE"] != 0 or (c["RASTER"], c["SWIZZLE"]) == (0, 1),
)

# A first look: the three schedules at the tiles CUTLASS's generator stamps out first, no
# stream-K, the default raster, one CTA per cluster, and the default also in a 1x2 cluster (the
# multicast of A): 6 builds, each a few minutes of nvcc.
QUICK_TUNABLES: dict[str, tuple] = {
    "TILE_M": (64, 128, 256),
    "TILE_N": (128,),
    "TILE_K": (64,),
    "CLUSTER_M": (1,),
    "CLUSTER_N": (1, 2),
    "SCHEDULE": (0, 1, 2),
    "EPILOGUE": (1,),
    "STREAM_K": (0,),
    "RASTER": (0,),
    "SWIZZLE": (1,),
    "SPLITS": (1,),
}
QUICK_RULES = (
    # pingpong at 64 and 128 rows, cooperative at 128 and 256, basic at 128 (like for like with
    # the cooperative one); the 1x2 cluster for the default tile only
    lambda c: (c["SCHEDULE"], c["TILE_M"]) in {(1, 64), (1, 128), (2, 128), (2, 256), (0, 128)},
    lambda c: c["CLUSTER_N"] == 1 or (c["SCHEDULE"], c["TILE_M"]) == (2, 128),
)
