"""How long a sweep task takes: a simple cost model for planning a time-bounded sweep.

A GEMM task (problem, backend) measures ``n`` configs, ``n`` = min(max_evals, size of the space)
less those already in the cache (a cached config costs nothing). Per measured config::

    verify + timing
    verify = CONFIG_FIXED_S + BACKEND_SETUP_S[backend] (compile, plans) + the checked run (one
             kernel) + the output to the host and compared in float64 (m*n*8 / host_bytes_per_s)
    timing = one warm-up kernel + max(min_reps * rep, min(budget_s + rep, reps * rep)),
             rep = kernel + per_rep_overhead_s
    kernel = FLOPs (dense-equivalent, 2mnk) / throughput(backend, device)

plus, once per problem (and once more for the unmasked operand of dense baselines), the inputs
and the float64 reference on the host: 2mnk / host_fp64_flops; and once per task of our sparse
kernels, the compression of A on the host: m*k / host_compress_elems_per_s. A mask task
(permutation search, mask and compression costs of one layer) is priced at its timing budget per
measurement.

The constants below are assumptions, not measurements: no GPU has run this suite yet. They are
named so a GPU host can calibrate them (compare a run's real task times against ``--plan``).
Where the cache holds measured rows of a backend, its throughput and repetitions are taken from
them instead (median over the rows), so a CPU (or a GPU with a cache) plans from its own data.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from suite.problem import GemmProblem


@dataclass(frozen=True)
class DeviceCosts:
    """Per-device assumptions of the cost model (see the module docstring)."""

    default_tflops: float  # a backend's sustained dense-equivalent TFLOP/s when not listed
    per_rep_overhead_s: float  # launch, sync and (GPU) the 256 MiB L2 flush of each repetition
    reps: int  # timing.measure's repetitions until 1% relative standard error (min_reps is 5)
    config_fixed_s: float  # prepare + checked run + bookkeeping of one config, fixed part
    host_bytes_per_s: float  # checked output copied to the host and compared in float64
    host_fp64_flops: float  # the float64 reference product on the host CPU
    host_compress_elems_per_s: float  # kernels.compress of A on the host (our kernels)


DEVICE_COSTS = {
    # one H100 SXM (bf16) on a 16-core host; an H200 is a little faster
    "cuda": DeviceCosts(
        default_tflops=300.0,
        per_rep_overhead_s=1.2e-4,  # ~30 us launch + 256 MiB memset at ~3 TB/s
        reps=20,  # GPU timings are steady: 1% RSE after a few tens of repetitions
        config_fixed_s=0.05,
        host_bytes_per_s=2e9,
        host_fp64_flops=2e11,  # 16 cores, float64 BLAS
        host_compress_elems_per_s=3e7,  # measured 1.6e7 on 2 CPU cores of this workplace
    ),
    # a CPU sweep
    # (results/reference/bench/cpu, 2 cores: median 0.1 TFLOP/s, 7 repetitions at a 0.3 s budget)
    "cpu": DeviceCosts(
        default_tflops=0.1,
        per_rep_overhead_s=2e-5,
        reps=8,
        config_fixed_s=0.05,
        host_bytes_per_s=1e9,
        host_fp64_flops=4e10,  # measured 4.7e10 on 2 cores of this workplace
        host_compress_elems_per_s=1.6e7,
    ),
}

# Assumed sustained dense-equivalent TFLOP/s (2mnk / time) of each GPU backend on one H100 in
# bf16 at large shapes; a sparse backend's dense equivalent is above the dense peak.
BACKEND_TFLOPS = {
    "cublas": 600.0,
    "cusparselt": 750.0,
    "cutlass": 650.0,
    "bimask_sparse": 350.0,  # mma.sp family (sm_80 instructions on Hopper)
    "bimask_dense": 250.0,
    "bimask_sparse_sm90": 600.0,  # wgmma family
    "bimask_dense_sm90": 450.0,
    "cutlass_sm90": 750.0,  # CUTLASS 3.x sm90 sparse (TMA + wgmma.sp), like cuSPARSELt
}

# Per-config setup beyond config_fixed_s: a new kernel config is compiled (NVRTC/nvcc, about
# a second, amortised over the problems that reuse it); cuSPARSELt plans and compresses.
BACKEND_SETUP_S = {
    "cusparselt": 0.05,
    "cutlass": 0.05,
    "bimask_sparse": 0.3,
    "bimask_dense": 0.3,
    "bimask_sparse_sm90": 0.3,
    "bimask_dense_sm90": 0.3,
    "cutlass_sm90": 0.3,  # a build from the kernel cache (ahead of time: minutes of nvcc each)
}

# backends that compress A on the host, once per problem (suite/backends/ours.py)
HOST_COMPRESS = frozenset({"bimask_sparse", "bimask_sparse_sm90"})


@dataclass(frozen=True)
class Calibration:
    """Throughput (FLOP/s) and repetitions per backend, measured from the cache's own rows."""

    flops_per_s: dict[str, float]
    reps: dict[str, int]

    @classmethod
    def from_rows(cls, rows) -> Calibration:
        rates, reps = defaultdict(list), defaultdict(list)
        for row in rows:
            if row.get("status") != "ok" or not row.get("median_ms", 0) > 0:
                continue
            try:
                flops = 2.0 * float(row["m"]) * float(row["n"]) * float(row["k"])
            except (KeyError, TypeError, ValueError):
                continue
            if flops <= 0 or row.get("op") not in ("gemm", "nm_gemm"):
                continue  # mask and compression rows time other work
            rates[row["backend"]].append(flops / (row["median_ms"] * 1e-3))
            reps[row["backend"]].append(int(row.get("reps") or 0))
        return cls(
            {b: statistics.median(v) for b, v in rates.items()},
            {b: max(int(statistics.median(v)), 2) for b, v in reps.items()},
        )


@dataclass(frozen=True)
class CostModel:
    device: str
    budget_s: float  # timing budget per config (TuneSettings.budget_s)
    min_reps: int = 5
    calibration: Calibration = field(default_factory=lambda: Calibration({}, {}))

    @property
    def costs(self) -> DeviceCosts:
        return DEVICE_COSTS["cuda" if self.device.startswith("cuda") else "cpu"]

    def kernel_s(self, problem: GemmProblem, backend: str) -> float:
        """Predicted time of one run of ``problem`` on ``backend``."""
        rate = self.calibration.flops_per_s.get(backend)
        if rate is None:
            assumed = BACKEND_TFLOPS if self.device.startswith("cuda") else {}
            rate = assumed.get(backend, self.costs.default_tflops) * 1e12
        return problem.flops / rate

    def config_s(self, problem: GemmProblem, backend: str) -> float:
        """Predicted seconds to verify and time one config of ``problem`` on ``backend``."""
        c, t = self.costs, self.kernel_s(problem, backend)
        reps = max(self.calibration.reps.get(backend, c.reps), self.min_reps)
        verify = c.config_fixed_s + BACKEND_SETUP_S.get(backend, 0.0) + t
        verify += problem.m * problem.n * 8 / c.host_bytes_per_s
        rep = t + c.per_rep_overhead_s
        timing = max(self.min_reps * rep, min(self.budget_s + rep, reps * rep))
        return verify + t + timing

    def compress_s(self, problem: GemmProblem, backend: str) -> float:
        """Compression of A on the host, once per problem (our kernels only)."""
        if backend not in HOST_COMPRESS:
            return 0.0
        return problem.m * problem.k / self.costs.host_compress_elems_per_s

    def problem_setup_s(self, problem: GemmProblem) -> float:
        """Inputs and the float64 reference of one problem, on the host."""
        c = self.costs
        return problem.flops / c.host_fp64_flops + (problem.m + problem.n) * problem.k * 4 / (
            c.host_bytes_per_s
        )

    def mask_task_s(self, measurements: int) -> float:
        """A mask task: each measurement runs to (at most) its timing budget."""
        return measurements * (self.budget_s + self.costs.config_fixed_s)
