"""Kernels built ahead of time: every kernel a run will launch, for a device named in advance.

A login node with nvcc and no GPU builds (``python -m kernels build --for-device H100 --out
DIR``); a compute node with a GPU and no compiler runs from that folder (``BIMASK_KERNEL_CACHE``
or ``--kernel-cache``). The list of builds is derived from the same definitions the run uses:
each family's default and quick-space configs, the extra defines ``nm_gemm`` adds
(:func:`gemm_extra`), the compress kernels of every pattern with a sparse path, and on Hopper the
CUTLASS sm90 family's shared libraries (:func:`cutlass_builds`; minutes of nvcc each, so
``--jobs`` matters: a GPU host has 16 cores).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kernels.device import smem_optin_for
from kernels.launch import arch_of
from kernels.registry import GEMM_FAMILIES, VARIANTS
from kernels.space import Config, SearchSpace

# Compute capability of the GPUs a user names most (NVIDIA's published table).
DEVICES = {
    "A100": (8, 0),
    "A30": (8, 0),
    "A10": (8, 6),
    "A40": (8, 6),
    "RTX3090": (8, 6),
    "L4": (8, 9),
    "L40S": (8, 9),
    "RTX4090": (8, 9),
    "H100": (9, 0),
    "H200": (9, 0),
    "GH200": (9, 0),
}

# A handful of configs per family for a time-bounded first look (``suite bench --space quick``):
# big tiles for big GEMMs, one smaller, the dense twin also with a wgmma group in flight.
QUICK_TUNABLES = {
    "sm80": {
        "BLOCK_M": (128, 256),
        "BLOCK_N": (128,),
        "BLOCK_K": (32, 64),
        "WARPS_M": (2, 4),
        "WARPS_N": (2,),
        "STAGES": (3, 4),
        "SMEM_PAD": (8,),
        "SPLIT_K": (1,),
        # the kernel as first reviewed (32-bit fragment loads, direct stores) and with both
        # issue-11 changes (ldmatrix, staged vector epilogue): the first GPU run checks and times
        # the pair; the full space has every combination
        "LDMATRIX": (0, 1),
        "EPI_SMEM": (0, 1),
    },
    "sm90": {
        "BLOCK_M": (128, 256),
        "BLOCK_N": (128, 256),
        "BLOCK_K": (64,),
        "WARPGROUPS": (2,),
        "STAGES": (4,),
        "INFLIGHT": (0, 1),
        "SMEM_PAD": (0, 1),
        "SPLIT_K": (1,),
        # the kernel as first reviewed (cp.async by every thread) and, at the default tile, the
        # issue-11 main loop (copy engine + producer warpgroup); the first GPU run checks both
        "TMA": (0, 1),
    },
}
# ... of which only these pairs: 32-deep tiles in four stages (they fit the 99 KB devices: 8.6,
# 8.9, 12.x) and 64-deep ones in three; 64-row warps
QUICK_RULES = {
    "sm80": (
        lambda c: (c["BLOCK_K"], c["STAGES"]) in {(32, 4), (64, 3)},
        lambda c: c["LDMATRIX"] == c["EPI_SMEM"],
        lambda c: c["WARPS_M"] == c["BLOCK_M"] // 64,  # 64 rows a warp: room for both kernels
    ),
    "sm90": (
        lambda c: c["SMEM_PAD"] == 1 - c["TMA"],  # padded cp.async tiles, swizzled TMA ones
        lambda c: not c["TMA"] or (c["BLOCK_M"], c["BLOCK_N"]) == (256, 128),
    ),
}
# Patterns whose compress kernel (mask + pack) a run builds: those with a sparse-core path.
COMPRESS_PATTERNS = ((2, 4), (1, 4), (2, 8), (1, 8), (1, 16))
COMPRESS_THREADS = 256


@dataclass(frozen=True)
class Build:
    """One cubin a run needs: variant, config, dtype, nvcc target and extra defines."""

    variant: str
    config: Config
    dtype: str
    arch: str
    extra: tuple[tuple[str, int], ...] = ()

    def label(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra)
        return f"{self.variant} {self.config.to_json()} {self.dtype} {self.arch} {extra}".strip()


def gemm_extra(config: Config, out_f32: bool, transpose_out: bool) -> tuple[tuple[str, int], ...]:
    """The defines ``nm_gemm`` adds to a config (split-K implies a float32 output)."""
    f32 = out_f32 or config["SPLIT_K"] > 1
    return (("OUT_F32", int(f32)), ("TRANS_C", int(transpose_out)))


def quick_space(variant_name: str, family: str, smem_limit: int | None = None) -> SearchSpace:
    """The quick space of a variant, as the suite builds it (``suite.backends.ours``), within
    ``smem_limit`` bytes of shared memory per block."""
    base = VARIANTS[variant_name].space(smem_limit=smem_limit)
    return SearchSpace(QUICK_TUNABLES[family], (*base.restrictions, *QUICK_RULES[family]))


def cc_of_arch(arch: str) -> tuple[int, int]:
    """The compute capability an nvcc target is for (sm_90a -> (9, 0))."""
    digits = arch.removeprefix("sm_").rstrip("a")
    if not digits.isdigit() or len(digits) < 2:
        raise ValueError(f"unknown arch {arch!r}; use e.g. sm_80, sm_86, sm_89, sm_90a")
    return int(digits[:-1]), int(digits[-1])


def device_cc(name: str) -> tuple[int, int]:
    key = name.upper().replace(" ", "").replace("-", "").removeprefix("NVIDIA")
    for known, cc in DEVICES.items():
        if key == known or key.startswith(known):  # "H100-SXM", "A100-80GB"
            return cc
    raise ValueError(f"unknown device {name!r}; known: {', '.join(DEVICES)} (or use --arch)")


def run_builds(cc: tuple[int, int], dtypes: tuple[str, ...] = ("bfloat16",)) -> list[Build]:
    """Every cubin a first look / quick bench / training run launches on a device of ``cc``.

    GEMMs: the default and the quick-space configs of each family the device runs, with the
    suite's output (same dtype, not transposed); the defaults also with the training layout
    (transposed output, float32 or same-dtype). Compress: every sparse-core pattern.
    """
    arch, builds = arch_of(cc), []
    for family, roles in GEMM_FAMILIES.items():
        for variant_name in dict.fromkeys(roles.values()):
            variant = VARIANTS[variant_name]
            if variant.runs_on(cc):
                continue
            quick = quick_space(variant_name, family, smem_optin_for(cc)).configs()
            configs = dict.fromkeys([variant.default(), *quick])
            for dtype in dtypes:
                for config in configs:
                    builds.append(
                        Build(variant_name, config, dtype, arch, gemm_extra(config, False, False))
                    )
                for out_f32 in (False, True):  # the training layout, default config
                    extra = gemm_extra(variant.default(), out_f32, True)
                    builds.append(Build(variant_name, variant.default(), dtype, arch, extra))
    threads = Config.of({"THREADS_PER_BLOCK": COMPRESS_THREADS})
    if not builds:  # no GEMM family runs here, so neither does the compress that feeds it
        return []
    builds += cutlass_builds(cc, dtypes)
    for dtype in dtypes:
        builds.append(Build("nm_compress_masked", threads, dtype, arch))
        for n, m in COMPRESS_PATTERNS:
            if 16 % m == 0:  # the mask+pack kernel handles groups that tile 16 columns
                extra = (("GROUP_M", m), ("GROUP_N", n))
                builds.append(Build("nm_compress", threads, dtype, arch, extra))
    return list(dict.fromkeys(builds))


def cutlass_builds(cc: tuple[int, int], dtypes: tuple[str, ...] = ("bfloat16",)) -> list[Build]:
    """The CUTLASS sm90 shared libraries a first look launches on ``cc``: the default and the
    quick-space configs (``suite.backends.cutlass_sm90``), one per build (run-time tunables
    share one), output in the inputs' dtype; and what the GPU tests and ``kernels check`` add
    (tests/test_cutlass_gpu.py): the default in float16, the default and its stream-K twin
    with a float32 output. Each also holds CUTLASS's compressor."""
    from kernels import cutlass_family as fam

    variant = VARIANTS["cutlass_sm90_sparse"]
    if variant.runs_on(cc):
        return []
    quick = SearchSpace(fam.QUICK_TUNABLES, (*variant.restrictions, *fam.QUICK_RULES)).configs()
    by_build = {}
    for config in [variant.default(), *quick]:
        by_build.setdefault(tuple(sorted(variant.defines(config).items())), config)
    arch, default = arch_of(cc), variant.default()
    stream_k = Config.of({**default.to_dict(), "STREAM_K": 1})
    builds = [
        Build(variant.name, config, dtype, arch, (("OUT_F32", 0),))
        for dtype in dtypes
        for config in by_build.values()
    ]
    builds += [
        Build(variant.name, default, "float16", arch, (("OUT_F32", 0),)),
        Build(variant.name, default, "bfloat16", arch, (("OUT_F32", 1),)),
        Build(variant.name, stream_k, "bfloat16", arch, (("OUT_F32", 1),)),
    ]
    return list(dict.fromkeys(builds))


def missing(builds: list[Build]) -> dict[Build, str]:
    """The builds the current kernel cache cannot serve, each with why."""
    from kernels.build import cache_entry, cache_problem

    out = {}
    for b in builds:
        path, key = cache_entry(VARIANTS[b.variant], b.config, b.arch, b.dtype, dict(b.extra))
        if why := cache_problem(path, key):
            out[b] = why
    return out


def build_all(builds: list[Build], jobs: int = 1) -> tuple[int, int, dict[Build, str]]:
    """Build what the cache lacks, ``jobs`` nvcc processes at a time.

    Returns (compiled, already cached, failures with their error)."""
    from kernels.build import CompileError, compile_variant

    def one(b: Build):
        try:
            built = compile_variant(VARIANTS[b.variant], b.config, b.arch, b.dtype, dict(b.extra))
            return b, built.cached, None
        except CompileError as err:
            return b, False, str(err)

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:  # nvcc runs outside the GIL
        results = list(pool.map(one, builds))
    failed = {b: err for b, _, err in results if err}
    cached = sum(1 for _, c, err in results if c and not err)
    return len(results) - cached - len(failed), cached, failed
