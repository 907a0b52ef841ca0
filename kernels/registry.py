"""Every kernel variant, registered once as a frozen record (source, symbol, tunables, limits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kernels.device import KB, SMEM_OPTIN_BY_CC
from kernels.resources import REG_RESERVE, gemm_smem, mma_registers, register_budget, wgmma_smem
from kernels.space import Config, SearchSpace

CUDA_DIR = Path(__file__).parent / "cuda"
# The most shared memory a config of each family may ask for at all (the space the tuner knows):
# the A100's 163 KB for sm80, the H100's 227 KB for sm90. Each device restricts its space further
# to its own opt-in limit (``KernelVariant.space(smem_limit=)``, ``kernels.device``).
SPACE_SMEM_MAX = {"sm80": 163 * KB, "sm90": 227 * KB}


@dataclass(frozen=True)
class KernelVariant:
    name: str
    source: str  # file under kernels/cuda
    symbol: str  # extern "C" entry point
    tunables: dict[str, tuple]
    default_config: dict
    restrictions: tuple[Callable[[dict], bool], ...] = ()
    fixed: dict = field(default_factory=dict)  # defines every config of this variant gets
    sparse: bool = True  # True: runs on sparse tensor cores (checked in SASS)
    sass_instruction: str = "HMMA.SP"
    patterns: str = "at most 2 kept of every aligned 4 (2:4, 1:4, 2:8, 1:8, 1:16)"
    dtypes: tuple[str, ...] = ("bfloat16", "float16")
    min_cc: tuple[int, int] = (8, 0)
    archs: tuple[str, ...] = ("sm_80", "sm_90a")  # the nvcc targets checked by default
    max_cc: tuple[int, int] | None = None  # set for arch-specific code (wgmma: Hopper only)
    threads: Callable[[dict], int] | None = None  # threads per block of a GEMM config
    smem: Callable[[dict], int] | None = None  # dynamic shared memory of a GEMM config
    description: str = ""
    # "cubin" (loaded by CuPy / PyCUDA) or "shared" (a host library with C entries, ctypes)
    product: str = "cubin"
    runtime: tuple[str, ...] = ()  # tunables passed at launch, not to nvcc: one build serves all
    include_dirs: Callable[[], list] | None = None  # extra -I folders (raises when absent)
    # a library the build depends on, as part of its key ("cutlass-4.2.0"; None: not here)
    dependency: Callable[[], str | None] | None = None
    available: Callable[[], str | None] | None = None  # replaces the CuPy device probe

    @property
    def path(self) -> Path:
        return CUDA_DIR / self.source

    def space(self, smem_limit: int | None = None) -> SearchSpace:
        """The tuning space; with ``smem_limit`` (a device's opt-in shared memory per block, in
        bytes) only the configs that fit it."""
        rules = self.restrictions
        if smem_limit is not None and self.smem is not None:
            rules = (*rules, lambda c, f=self.smem: f(c) <= smem_limit)
        return SearchSpace(self.tunables, rules)

    @property
    def smallest_smem_optin(self) -> int:
        """The smallest opt-in shared memory per block of the devices this variant runs on."""
        return min(v for cc, v in SMEM_OPTIN_BY_CC.items() if self.runs_on(cc) is None)

    def default(self) -> Config:
        """The default config: valid, and launchable on every device the variant runs on."""
        config = Config.of(self.default_config)
        if not self.space(self.smallest_smem_optin).allows(self.default_config):
            raise ValueError(
                f"{self.name}: default config {config.to_json()} breaks a restriction or needs "
                f"more than {self.smallest_smem_optin // KB} KB of shared memory"
            )
        return config

    def corners(self) -> list[Config]:
        """The default plus the valid configs with the smallest and largest product of values."""
        configs = self.space().configs()

        def size(c: Config) -> int:
            n = 1
            for v in c.to_dict().values():
                n *= max(int(v), 1)
            return n

        picks = {self.default(), min(configs, key=size), max(configs, key=size)}
        return sorted(picks, key=lambda c: c.to_json())

    def defines(self, config: Config, dtype: str = "bfloat16") -> dict[str, int]:
        """The -D defines of a config's build (its run-time tunables left out)."""
        tunables = {k: v for k, v in config.to_dict().items() if k not in self.runtime}
        d = {**self.fixed, **tunables, "DTYPE_BF16": int(dtype == "bfloat16")}
        if d.get("SPLIT_K", 1) > 1:
            d["OUT_F32"] = 1  # split-K partial sums are added atomically in float32
        return {k: int(v) for k, v in d.items()}

    def is_available(self) -> str | None:
        """None when this variant can run here, else why not."""
        if self.available is not None:
            return self.available()
        try:
            import cupy

            cc = cupy.cuda.Device(0).compute_capability
        except Exception as err:  # no cupy, no driver, no device
            return f"no CUDA device through CuPy ({type(err).__name__})"
        major, minor = int(cc[:-1]), int(cc[-1])
        return self.runs_on((major, minor))

    def runs_on(self, cc: tuple[int, int]) -> str | None:
        """None when a device of compute capability ``cc`` runs this variant, else why not."""
        if cc < self.min_cc or (self.max_cc and cc > self.max_cc):
            want = ".".join(map(str, self.min_cc))
            want = f"{want} to {'.'.join(map(str, self.max_cc))}" if self.max_cc else f"{want}+"
            return f"{self.name} needs compute capability {want}, the device has {cc[0]}.{cc[1]}"
        return None


def _gemm_restrictions(sparse: bool, b_kmajor: bool = False) -> tuple[Callable[[dict], bool], ...]:
    return (
        lambda c: c["BLOCK_M"] % (c["WARPS_M"] * 32) == 0,  # whole 32-row metadata tiles per warp
        lambda c: c["BLOCK_N"] % (c["WARPS_N"] * 8) == 0,
        # accumulators per thread: (WARP_M/16) x (WARP_N/8) x 4 floats, at most 128
        lambda c: (
            (c["BLOCK_M"] // c["WARPS_M"] // 16) * (c["BLOCK_N"] // c["WARPS_N"] // 8) * 4 <= 128
        ),
        # no register spills: what the main loop keeps live fits the launch bound's budget (the
        # dense twin gets the same rule, so the two spaces compare like for like)
        lambda c: mma_registers(c) + REG_RESERVE <= register_budget(_mma_threads(c)),
        lambda c, s=sparse: (
            gemm_smem({**c, "B_KMAJOR": int(b_kmajor)}, s) <= SPACE_SMEM_MAX["sm80"]
        ),
        lambda c: not (c.get("EPI_SMEM", 0) and c["SPLIT_K"] > 1),  # whole tiles, no atomics
    )


def _wgmma_restrictions(sparse: bool) -> tuple[Callable[[dict], bool], ...]:
    rules = (
        lambda c: c["BLOCK_M"] % (64 * c["WARPGROUPS"]) == 0,  # whole m64 tiles per warpgroup
        # accumulators per thread: (m64 tiles per warpgroup) x BLOCK_N/2 floats, at most 128
        lambda c: (c["BLOCK_M"] // c["WARPGROUPS"] // 64) * (c["BLOCK_N"] // 2) <= 128,
        lambda c: c["STAGES"] - 1 - c["INFLIGHT"] >= 1,  # at least one tile loading ahead
        lambda c, s=sparse: wgmma_smem(c, s) <= SPACE_SMEM_MAX["sm90"],
        # TMA: each consumer waits for its wgmmas before it releases a stage, and the swizzled
        # tiles have no padding (one config, not two the same)
        lambda c: not c["TMA"] or (c["INFLIGHT"] == 0 and c["SMEM_PAD"] == 0),
    )
    # the metadata register of an in-flight sparse wgmma would be overwritten (see the source)
    return (*rules, lambda c: c["INFLIGHT"] == 0) if sparse else rules


def _mma_threads(c: dict) -> int:
    return c["WARPS_M"] * c["WARPS_N"] * 32


def _wgmma_threads(c: dict) -> int:
    return (c["WARPGROUPS"] + c.get("TMA", 0)) * 128  # TMA: a producer warpgroup more


# 128 x 128 tiles, 32 dense K per stage, four stages: 80 KB (dense) / 66 KB (sparse) of shared
# memory, so that the default launches on the 99 KB devices (8.6, 8.9, 12.x) too; the 64-deep
# three-stage tile it replaces needed 108 KB dense.
GEMM_DEFAULT = {
    "BLOCK_M": 128,
    "BLOCK_N": 128,
    "BLOCK_K": 32,
    "WARPS_M": 2,
    "WARPS_N": 2,
    "STAGES": 4,
    "SMEM_PAD": 8,
    "SPLIT_K": 1,
    # 32-bit fragment loads until a GPU run has checked the ldmatrix path (issue 17's list); the
    # tuner measures both (a wrong result is a failed config, never a winner)
    "LDMATRIX": 0,
    "EPI_SMEM": 0,  # the same: direct stores until a GPU run has checked the staged epilogue
}
GEMM_TUNABLES = {
    "BLOCK_M": (64, 128, 256),
    "BLOCK_N": (64, 128, 256),
    "BLOCK_K": (32, 64, 128),
    "WARPS_M": (1, 2, 4),
    "WARPS_N": (1, 2, 4),
    "STAGES": (2, 3, 4),
    "SMEM_PAD": (0, 8),
    "SPLIT_K": (1, 2, 4),
    "LDMATRIX": (0, 1),
    "EPI_SMEM": (0, 1),
}

VARIANTS: dict[str, KernelVariant] = {}


def register(v: KernelVariant) -> KernelVariant:
    if v.name in VARIANTS:
        raise ValueError(f"kernel variant {v.name!r} registered twice")
    VARIANTS[v.name] = v
    return v


def _register_gemm_family(
    family: str,
    source: str,
    symbol: str,
    tunables: dict,
    default: dict,
    restrictions: Callable[[bool], tuple],
    smem: Callable[[dict, bool], int],
    sass: tuple[str, str],
    about: tuple[str, str, str],  # descriptions: sparse, gather, dense
    **common,
) -> dict[str, str]:
    """The sparse, gather (permuted-B) and dense variants of one GEMM source; returns their names
    by role. ``sass`` is the (sparse, dense) MMA prefix the SASS must hold."""
    suffix = "" if family == "sm80" else f"_{family}"
    roles = {"sparse": f"nm_spmm{suffix}", "gather": f"nm_spmm_gather{suffix}"}
    roles["dense"] = f"dense_gemm{suffix}"
    for (role, name), text in zip(roles.items(), about, strict=True):
        sparse = role != "dense"
        rules = restrictions(sparse)
        if role == "gather":  # the copy engine cannot gather rows (Hopper): cp.async loads only
            rules = (*rules, lambda c: not c.get("TMA", 0))
        register(
            KernelVariant(
                name,
                source,
                symbol,
                tunables,
                default,
                rules,
                fixed={"SPARSE": int(sparse), "GATHER_B": int(role == "gather")},
                sparse=sparse,
                sass_instruction=sass[0] if sparse else sass[1],
                patterns=KernelVariant.patterns if sparse else "dense",
                smem=lambda c, s=sparse: smem(c, s),
                description=text,
                **common,
            )
        )
    return roles


GEMM_FAMILIES: dict[str, dict[str, str]] = {}  # family -> role -> variant name
GEMM_FAMILIES["sm80"] = _register_gemm_family(
    "sm80",
    "nm_gemm_sm80.cu",
    "nm_gemm",
    GEMM_TUNABLES,
    GEMM_DEFAULT,
    _gemm_restrictions,
    gemm_smem,
    ("HMMA.SP", "HMMA.16816"),
    (
        "N:M sparse A (2:4 tensor-core format) x dense B^T, mma.sp m16n8k32",
        "nm_spmm reading B's K axis through the Bi-Mask permutation (bwd-data)",
        "the same kernel with dense A, mma.sync m16n8k16",
    ),
    threads=_mma_threads,
)

# The permuted gather with B read K-major (K x N, N contiguous): row perm[k] of B is whole 16-byte
# chunks, copied with cp.async (issue 11.7). Its caller hands it B^T (nm_gemm(b_layout="kn")), as
# when the GEMM that produced dY wrote it transposed; same tunables as the family.
register(
    KernelVariant(
        "nm_spmm_gather_kn",
        "nm_gemm_sm80.cu",
        "nm_gemm",
        GEMM_TUNABLES,
        GEMM_DEFAULT,
        _gemm_restrictions(True, b_kmajor=True),
        fixed={"SPARSE": 1, "GATHER_B": 1, "B_KMAJOR": 1},
        sass_instruction="HMMA.SP",
        smem=lambda c: gemm_smem({**c, "B_KMAJOR": 1}, True),
        description="nm_spmm_gather reading B K-major (K x N): the gather copies whole rows",
        threads=_mma_threads,
    )
)
GEMM_FAMILIES["sm80"]["gather_kn"] = "nm_spmm_gather_kn"

# 256 x 128 tiles, two warpgroups of two m64 tiles each: A is the operand 2:4 halves, so a tall
# tile moves the most dense-equivalent work per byte on the sparse path (intensity
# BM*BN/(BM/2 + BN) = 128 FLOP/B against BM*BN/(BM + BN) = 85 dense).
WGMMA_DEFAULT = {
    "BLOCK_M": 256,
    "BLOCK_N": 128,
    "BLOCK_K": 64,
    "WARPGROUPS": 2,
    "STAGES": 4,
    "INFLIGHT": 0,
    "SMEM_PAD": 1,
    "SPLIT_K": 1,
    # cp.async loads by every thread until a GPU run has checked the copy-engine path (issue 17's
    # list); the tuner measures both (a wrong result is a failed config, never a winner)
    "TMA": 0,
}
WGMMA_TUNABLES = {
    "BLOCK_M": (64, 128, 256),
    "BLOCK_N": (64, 128, 256),  # the wgmma instruction's N
    "BLOCK_K": (32, 64, 128),
    "WARPGROUPS": (1, 2),
    "STAGES": (2, 3, 4, 5),
    "INFLIGHT": (0, 1),
    "SMEM_PAD": (0, 1),
    "SPLIT_K": (1, 2, 4),
    "TMA": (0, 1),  # 1: copy-engine loads by a producer warpgroup, mbarriers, swizzled tiles
}
GEMM_FAMILIES["sm90"] = _register_gemm_family(
    "sm90",
    "nm_gemm_sm90.cu",
    "nm_gemm_wgmma",
    WGMMA_TUNABLES,
    WGMMA_DEFAULT,
    _wgmma_restrictions,
    wgmma_smem,
    ("HGMMA.SP", "HGMMA.64x"),
    (
        "N:M sparse A x dense B^T on Hopper: wgmma.mma_async.sp m64nNk32",
        "nm_spmm_sm90 reading B's K axis through the Bi-Mask permutation",
        "the same Hopper kernel with dense A, wgmma.mma_async m64nNk16",
    ),
    threads=_wgmma_threads,
    min_cc=(9, 0),
    max_cc=(9, 0),  # wgmma is Hopper's: sm_90a code, no Blackwell
    archs=("sm_90a",),
)

register(
    KernelVariant(
        "nm_compress_masked",
        "nm_compress.cu",
        "nm_compress_masked",
        {"THREADS_PER_BLOCK": (128, 256, 512)},
        {"THREADS_PER_BLOCK": 256},
        sparse=False,
        sass_instruction="",
        description="pack an already-masked matrix (e.g. the Bi-Mask (W*Mb)^T)",
    )
)
register(
    KernelVariant(
        "nm_compress",
        "nm_compress.cu",
        "nm_compress_topn",
        {"THREADS_PER_BLOCK": (128, 256, 512)},
        {"THREADS_PER_BLOCK": 256},
        fixed={"GROUP_N": 2, "GROUP_M": 4},
        sparse=False,
        sass_instruction="",
        description="mask (top-N of M) + pack into the kernel format, one pass",
    )
)


def _cutlass_available() -> str | None:
    """The CUTLASS family runs through ctypes on torch's stream: a Hopper device, and CUTLASS's
    headers to build with unless the kernel cache was built ahead of time."""
    from kernels import cutlass_headers

    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        cc = tuple(torch.cuda.get_device_capability())
    except Exception as err:
        return f"no CUDA device through torch ({type(err).__name__})"
    if cc != (9, 0):
        return f"cutlass_sm90_sparse needs compute capability 9.0 (Hopper), the device has {cc}"
    if cutlass_headers.missing_reason() and not _cache_has("cutlass_sm90_sparse"):
        return cutlass_headers.missing_reason() + " (or carry a cache from 'kernels build')"
    return None


def _cache_has(variant: str) -> bool:
    from kernels import artifacts
    from kernels.build import CACHE_DIR

    try:
        return any(
            e["key"]["variant"] == variant for e in artifacts.read_manifest(CACHE_DIR).values()
        )
    except artifacts.ArtifactError:
        return False


def _register_cutlass() -> None:
    from kernels import cutlass_family as fam
    from kernels import cutlass_headers

    register(
        KernelVariant(
            "cutlass_sm90_sparse",
            "cutlass_sm90_sparse.cu",
            "cutlass_sm90_sparse_gemm",
            fam.TUNABLES,
            fam.DEFAULT,
            fam.RESTRICTIONS,
            fixed={"OUT_F32": 0},  # in every key, so that the suite's build is the default's
            sass_instruction="HGMMA.SP",
            min_cc=(9, 0),
            max_cc=(9, 0),  # wgmma.sp: sm_90a code
            archs=("sm_90a",),
            description=(
                "CUTLASS 3.x sm90 structured-sparse GEMM (TMA + wgmma.sp, warp-specialised), "
                "built from the nvidia-cutlass wheel's headers"
            ),
            product="shared",
            runtime=fam.RUNTIME,
            include_dirs=lambda: cutlass_headers.include_dirs(),
            dependency=lambda: cutlass_headers.version(),
            available=_cutlass_available,
        )
    )


_register_cutlass()
