"""How long a sweep task takes: a simple cost model for planning a time-bounded sweep.

A GEMM task (problem, backend) measures ``n`` configs, ``n`` = min(max_evals, size of the space)
less those already in the cache (a cached config costs nothing). Per measured config::

 (results/bench/cpu, 2 coresverify + timing
 (results/bench/cpu, 2 coresverify = CONFIG_FIXED_S + BACKEND_SETUP_S[backend] (compile, plans) + the checked run (one
 (results/bench/cpu, 2 cores         kernel) + the output to the host and compared in float64 (m*n*8 / host_bytes_per_s)
 (results/bench/cpu, 2 corestiming = one warm-up kernel + max(min_reps * rep, min(budget_s + rep, reps * rep)),
 (results/bench/cpu, 2 cores         rep = kernel + per_rep_overhead_s
 (results/bench/cpu, 2 coreskernel = FLOPs (dense-equivalent, 2mnk) / throughput(backend, device)

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
 (results/bench/cpu, 2 cores"""Per-device assumptions of the cost model (see the module docstring)."""

 (results/bench/cpu, 2 coresdefault_tflops: float  # a backend's sustained dense-equivalent TFLOP/s when not listed
 (results/bench/cpu, 2 coresper_rep_overhead_s: float  # launch, sync and (GPU) the 256 MiB L2 flush of each repetition
 (results/bench/cpu, 2 coresreps: int  # timing.measure's repetitions until 1% relative standard error (min_reps is 5)
 (results/bench/cpu, 2 coresconfig_fixed_s: float  # prepare + checked run + bookkeeping of one config, fixed part
 (results/bench/cpu, 2 coreshost_bytes_per_s: float  # checked output copied to the host and compared in float64
 (results/bench/cpu, 2 coreshost_fp64_flops: float  # the float64 reference product on the host CPU
 (results/bench/cpu, 2 coreshost_compress_elems_per_s: float  # kernels.compress of A on the host (our kernels)


DEVICE_COSTS = {
 (results/bench/cpu, 2 cores# one H100 SXM (bf16) on a 16-core host; an H200 is a little faster
 (results/bench/cpu, 2 cores"cuda": DeviceCosts(
 (results/bench/cpu, 2 cores    default_tflops=300.0,
 (results/bench/cpu, 2 cores    per_rep_overhead_s=1.2e-4,  # ~30 us launch + 256 MiB memset at ~3 TB/s
 (results/bench/cpu, 2 cores    reps=20,  # GPU timings are steady: 1% RSE after a few tens of repetitions
 (results/bench/cpu, 2 cores    config_fixed_s=0.05,
 (results/bench/cpu, 2 cores    host_bytes_per_s=2e9,
 (results/bench/cpu, 2 cores    host_fp64_flops=2e11,  # 16 cores, float64 BLAS
 (results/bench/cpu, 2 cores    host_compress_elems_per_s=3e7,  # measured 1.6e7 on 2 CPU cores of this workplace
 (results/bench/cpu, 2 cores),
 (results/bench/cpu, 2 cores# a CPU sweep
 (results/bench/cpu, 2 cores# (results/bench/cpu, 2 cores: median 0.1 TFLOP/s, 7 repetitions at a 0.3 s budget)
 (results/bench/cpu, 2 cores"cpu": DeviceCosts(
 (results/bench/cpu, 2 cores    default_tflops=0.1,
 (results/bench/cpu, 2 cores    per_rep_overhead_s=2e-5,
 (results/bench/cpu, 2 cores    reps=8,
 (results/bench/cpu, 2 cores    config_fixed_s=0.05,
 (results/bench/cpu, 2 cores    host_bytes_per_s=1e9,
 (results/bench/cpu, 2 cores    host_fp64_flops=4e10,  # measured 4.7e10 on 2 cores of this workplace
 (results/bench/cpu, 2 cores    host_compress_elems_per_s=1.6e7,
 (results/bench/cpu, 2 cores),
}

# Assumed sustained dense-equivalent TFLOP/s (2mnk / time) of each GPU backend on one H100 in
# bf16 at large shapes; a sparse backend's dense equivalent is above the dense peak.
BACKEND_TFLOPS = {
 (results/bench/cpu, 2 cores"cublas": 600.0,
 (results/bench/cpu, 2 cores"cusparselt": 750.0,
 (results/bench/cpu, 2 cores"cutlass": 650.0,
 (results/bench/cpu, 2 cores"bimask_sparse": 350.0,  # mma.sp family (sm_80 instructions on Hopper)
 (results/bench/cpu, 2 cores"bimask_dense": 250.0,
 (results/bench/cpu, 2 cores"bimask_sparse_sm90": 600.0,  # wgmma family
 (results/bench/cpu, 2 cores"bimask_dense_sm90": 450.0,
}

# Per-config setup beyond config_fixed_s: a new kernel config is compiled (NVRTC/nvcc, about
# a second, amortised over the problems that reuse it); cuSPARSELt plans and compresses.
BACKEND_SETUP_S = {
 (results/bench/cpu, 2 cores"cusparselt": 0.05,
 (results/bench/cpu, 2 cores"cutlass": 0.05,
 (results/bench/cpu, 2 cores"bimask_sparse": 0.3,
 (results/bench/cpu, 2 cores"bimask_dense": 0.3,
 (results/bench/cpu, 2 cores"bimask_sparse_sm90": 0.3,
 (results/bench/cpu, 2 cores"bimask_dense_sm90": 0.3,
}

# backends that compress A on the host, once per problem (suite/backends/ours.py)
HOST_COMPRESS = frozenset({"bimask_sparse", "bimask_sparse_sm90"})


@dataclass(frozen=True)
class Calibration:
 (results/bench/cpu, 2 cores"""Throughput (FLOP/s) and repetitions per backend, measured from the cache's own rows."""

 (results/bench/cpu, 2 coresflops_per_s: dict[str, float]
 (results/bench/cpu, 2 coresreps: dict[str, int]

 (results/bench/cpu, 2 cores@classmethod
 (results/bench/cpu, 2 coresdef from_rows(cls, rows) -> Calibration:
 (results/bench/cpu, 2 cores    rates, reps = defaultdict(list), defaultdict(list)
 (results/bench/cpu, 2 cores    for row in rows:
 (results/bench/cpu, 2 cores        if row.get("status") != "ok" or not row.get("median_ms", 0) > 0:
 (results/bench/cpu, 2 cores            continue
 (results/bench/cpu, 2 cores        try:
 (results/bench/cpu, 2 cores            flops = 2.0 * float(row["m"]) * float(row["n"]) * float(row["k"])
 (results/bench/cpu, 2 cores        except (KeyError, TypeError, ValueError):
 (results/bench/cpu, 2 cores            continue
 (results/bench/cpu, 2 cores        if flops <= 0 or row.get("op") not in ("gemm", "nm_gemm"):
 (results/bench/cpu, 2 cores            continue  # mask and compression rows time other work
 (results/bench/cpu, 2 cores        rates[row["backend"]].append(flops / (row["median_ms"] * 1e-3))
 (results/bench/cpu, 2 cores        reps[row["backend"]].append(int(row.get("reps") or 0))
 (results/bench/cpu, 2 cores    return cls(
 (results/bench/cpu, 2 cores        {b: statistics.median(v) for b, v in rates.items()},
 (results/bench/cpu, 2 cores        {b: max(int(statistics.median(v)), 2) for b, v in reps.items()},
 (results/bench/cpu, 2 cores    )


@dataclass(frozen=True)
class CostModel:
 (results/bench/cpu, 2 coresdevice: str
 (results/bench/cpu, 2 coresbudget_s: float  # timing budget per config (TuneSettings.budget_s)
 (results/bench/cpu, 2 coresmin_reps: int = 5
 (results/bench/cpu, 2 corescalibration: Calibration = field(default_factory=lambda: Calibration({}, {}))

 (results/bench/cpu, 2 cores@property
 (results/bench/cpu, 2 coresdef costs(self) -> DeviceCosts:
 (results/bench/cpu, 2 cores    return DEVICE_COSTS["cuda" if self.device.startswith("cuda") else "cpu"]

 (results/bench/cpu, 2 coresdef kernel_s(self, problem: GemmProblem, backend: str) -> float:
 (results/bench/cpu, 2 cores    """Predicted time of one run of ``problem`` on ``backend``."""
 (results/bench/cpu, 2 cores    rate = self.calibration.flops_per_s.get(backend)
 (results/bench/cpu, 2 cores    if rate is None:
 (results/bench/cpu, 2 cores        assumed = BACKEND_TFLOPS if self.device.startswith("cuda") else {}
 (results/bench/cpu, 2 cores        rate = assumed.get(backend, self.costs.default_tflops) * 1e12
 (results/bench/cpu, 2 cores    return problem.flops / rate

 (results/bench/cpu, 2 coresdef config_s(self, problem: GemmProblem, backend: str) -> float:
 (results/bench/cpu, 2 cores    """Predicted seconds to verify and time one config of ``problem`` on ``backend``."""
 (results/bench/cpu, 2 cores    c, t = self.costs, self.kernel_s(problem, backend)
 (results/bench/cpu, 2 cores    reps = max(self.calibration.reps.get(backend, c.reps), self.min_reps)
 (results/bench/cpu, 2 cores    verify = c.config_fixed_s + BACKEND_SETUP_S.get(backend, 0.0) + t
 (results/bench/cpu, 2 cores    verify += problem.m * problem.n * 8 / c.host_bytes_per_s
 (results/bench/cpu, 2 cores    rep = t + c.per_rep_overhead_s
 (results/bench/cpu, 2 cores    timing = max(self.min_reps * rep, min(self.budget_s + rep, reps * rep))
 (results/bench/cpu, 2 cores    return verify + t + timing

 (results/bench/cpu, 2 coresdef compress_s(self, problem: GemmProblem, backend: str) -> float:
 (results/bench/cpu, 2 cores    """Compression of A on the host, once per problem (our kernels only)."""
 (results/bench/cpu, 2 cores    if backend not in HOST_COMPRESS:
 (results/bench/cpu, 2 cores        return 0.0
 (results/bench/cpu, 2 cores    return problem.m * problem.k / self.costs.host_compress_elems_per_s

 (results/bench/cpu, 2 coresdef problem_setup_s(self, problem: GemmProblem) -> float:
 (results/bench/cpu, 2 cores    """Inputs and the float64 reference of one problem, on the host."""
 (results/bench/cpu, 2 cores    c = self.costs
 (results/bench/cpu, 2 cores    return problem.flops / c.host_fp64_flops + (problem.m + problem.n) * problem.k * 4 / (
 (results/bench/cpu, 2 cores        c.host_bytes_per_s
 (results/bench/cpu, 2 cores    )

 (results/bench/cpu, 2 coresdef mask_task_s(self, measurements: int) -> float:
 (results/bench/cpu, 2 cores    """A mask task: each measurement runs to (at most) its timing budget."""
 (results/bench/cpu, 2 cores    return measurements * (self.budget_s + self.costs.config_fixed_s)
