"""python -m suite first-look: does it work on this GPU, and what do sparse tensor cores give?

The steps, in order, each under its own limit (:mod:`suite.steps`), the whole under a budget
(default 6 minutes): the device record; every GEMM kernel once against float64; the headline
GEMM (8192^3, bf16, 2:4, fwd) on every GPU backend side by side; the permuted input-gradient
GEMM at the same size (in-kernel gather, separate gather, pre-permuted operand); the other
headline shapes (quick space); the GPU tests; compute-sanitizer memcheck of one launch per
kernel. The measured training step joins once it exists. Results: ``summary.md`` (device,
a line per step, the headline tables), ``steps.csv``, ``headline.csv``, every step's log and
output, and all of it in ``first-look.tar.gz``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from bimask.outputs import check_output_dir
from suite import store
from suite.steps import RESERVE_S, Step, StepResult, pack, run_steps

ROOT = Path(__file__).resolve().parents[1]
SHAPES = Path(__file__).parent / "shapes"
GPU_BACKENDS = (
    "cublas",
    "cusparselt",
    "cutlass",
    "bimask_sparse",
    "bimask_dense",
    "bimask_sparse_sm90",
    "bimask_dense_sm90",
    "cutlass_sm90",
)
GPU_TESTS = (  # the GPU acceptance tests, run against the carried kernel cache
    "tests/test_kernels_gpu.py",
    "tests/test_training_kernels.py",
    "tests/test_training_gpu.py",
    "tests/test_cutlass_gpu.py",
)
# every step, in run order; run 1 is the default set, a later run names its own (--steps)
STEP_NAMES = ("device", "correctness", "headline", "permuted", "shapes", "gpu-tests", "memcheck",
              "training-step")  # fmt: skip
DEFAULT_STEPS = STEP_NAMES[:-1]  # the training step comes in a second run (issue 17's order)
BUDGET_S = 420.0  # issue 17's run 1: at most 7 minutes of a 15-minute window
TIMING_BUDGET_S = 0.25  # per config, in the benchmark steps
# Estimates for the dry run (seconds), assumptions to be calibrated on a GPU host: a process
# start (python, torch, CUDA context), a sweep's report; the sweeps themselves are estimated by
# the planner's cost model (suite/costmodel.py).
STARTUP_S = 8.0
REPORT_S = 7.0
TESTS_S = 90.0
STEP_LIMIT_S = 150.0  # the training step: suite step --full-shapes plans itself into this
HEADLINE = "headline.csv"


def _bench_argv(out: Path, shapes: Path, passes: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "suite",
        "bench",
        "--tier",
        "gpu",
        "--shapes",
        str(shapes),
        "--patterns",
        "2:4",
        "--passes",
        *passes,
        "--perms",
        "greedy",
        "--space",
        "quick",
        "--strategy",
        "brute_force",
        "--budget-s",
        str(TIMING_BUDGET_S),
        "--backends",
        *GPU_BACKENDS,
        "--cache",
        str(out / "bench-cache.jsonl"),  # shared: a later step reuses what an earlier measured
        "--no-progress",
        "--out",
        str(out / shapes.stem / "-".join(passes)),
    ]


def headline_rows(run_dir: Path) -> pd.DataFrame:
    """Per pass, backend and permutation realisation: the best config, TFLOP/s, x cuBLAS."""
    df, _ = store.load(run_dir)
    ok = df[(df.status == "ok") & df["pass"].isin(["fwd", "bwd-data"])].copy()
    ok["realisation"] = [
        json.loads(c).get("perm_realisation", "-") if str(c).startswith("{") else "-"
        for c in ok.config
    ]
    keys = ["layer", "pass", "backend", "realisation"]
    best = ok.sort_values("median_ms").groupby(keys, as_index=False).first()
    cublas = best[best.backend == "cublas"].set_index(["layer", "pass"]).median_ms
    ratio = [
        cublas.get((r.layer, r["pass"]), float("nan")) / r.median_ms for _, r in best.iterrows()
    ]
    best = best.assign(x_cublas=ratio)
    cols = [*keys, "m", "n", "k", "median_ms", "tflops", "x_cublas", "config"]
    return best[cols].sort_values(["layer", "pass", "median_ms"]).reset_index(drop=True)


def _headline_after(step_out: Path):
    def after(out_dir: Path) -> None:
        rows = headline_rows(step_out)
        target = out_dir / HEADLINE
        old = pd.read_csv(target) if target.is_file() else None
        rows = pd.concat([old, rows], ignore_index=True) if old is not None else rows
        tmp = target.with_name(HEADLINE + ".tmp")
        rows.to_csv(tmp, index=False)
        tmp.replace(target)

    return after


def _sweep_estimate(shapes: Path, passes: list[str]) -> float:
    """The planner's estimate (suite/costmodel.py) of a benchmark step's sweep, in seconds."""
    from suite.plan import make_plan
    from suite.shapes import benchmark_layers
    from suite.sweep import SweepSpec
    from suite.tuner import TuneSettings

    spec = SweepSpec(
        tuple(benchmark_layers("gpu", shapes)),
        ("2:4",),
        ("greedy",),
        GPU_BACKENDS,
        "bfloat16",
        "cuda",
        TuneSettings("brute_force", None, None, 0, budget_s=TIMING_BUDGET_S),
        passes=tuple(passes),
        space="quick",
    )
    return make_plan(spec, None).estimate_s


def plan(out: Path, cc: tuple[int, int], kernel_cache: Path | None) -> list[Step]:
    """The first look's steps for a device of compute capability ``cc``."""
    from kernels import aot
    from kernels.registry import VARIANTS

    builds = aot.run_builds(cc)
    cutlass = set(aot.cutlass_builds(cc))
    # what the GEMM sweeps launch: our kernels' suite layout, CUTLASS's builds
    suite_layout = tuple(b for b in builds if dict(b.extra).get("TRANS_C") == 0 or b in cutlass)
    defaults = tuple(b for b in suite_layout if b.config == VARIANTS[b.variant].default())
    # the training step: our kernels' training layout, the compress kernels, CUTLASS's default
    training = tuple(b for b in builds if b not in suite_layout or (b in cutlass and b in defaults))

    env = {"PYTHONPATH": str(ROOT)} | (
        {"BIMASK_KERNEL_CACHE": str(kernel_cache)} if kernel_cache else {}
    )
    py = sys.executable
    square = SHAPES / "first_look.toml"
    headline = SHAPES / "headline.toml"

    def bench(name, title, shapes, passes, limit, already: float = 0.0):
        # the sweep plans itself into the step's limit (suite bench --time-budget): what does
        # not fit is skipped with a reason (skipped.csv) and the step still writes its results
        sweep_s = limit - STARTUP_S - REPORT_S
        est = STARTUP_S + min(_sweep_estimate(shapes, passes) - already, sweep_s) + REPORT_S
        run_out = out / shapes.stem / "-".join(passes)
        return Step(
            name,
            title,
            [*_bench_argv(out, shapes, passes), "--time-budget", f"{sweep_s:.0f}"],
            limit,
            est,
            env=env,
            after=_headline_after(run_out),
            needs=suite_layout,
        )

    sanitizer = shutil.which("compute-sanitizer")
    memcheck = [sanitizer, "--tool", "memcheck", "--error-exitcode", "3", py, "-m", "kernels"]
    return [
        Step("device", "device record", [py, "-m", "suite", "devices"], 30, STARTUP_S, env=env),
        Step(
            "correctness",
            "every GEMM kernel once vs float64",
            [py, "-m", "kernels", "check"],
            60,
            STARTUP_S + 6,
            env=env,
            needs=defaults,
        ),
        bench("headline", "8192^3 bf16 2:4 fwd, every GPU backend", square, ["fwd"], 75),
        bench("permuted", "8192^3 permuted input gradient", square, ["bwd-data"], 75),
        # fwd only: with bwd-data the other four shapes are some 250 more configs than fit.
        # The square's fwd rows come from the shared cache (measured by "headline").
        bench(
            "shapes",
            "the other headline shapes, fwd",
            headline,
            ["fwd"],
            120,
            already=_sweep_estimate(square, ["fwd"]),
        ),
        Step(
            "gpu-tests",
            "GPU tests (JUnit in gpu-tests.xml)",
            [
                py,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                *(str(ROOT / t) for t in GPU_TESTS),
                f"--junitxml={out / 'gpu-tests.xml'}",
            ],
            150,
            TESTS_S,
            env=env,
            needs=tuple(builds),
        ),
        Step(
            "memcheck",
            "compute-sanitizer memcheck, one launch per kernel",
            [*memcheck, "check"] if sanitizer else None,
            90,
            STARTUP_S * 3 + 10,
            skip=None if sanitizer else "compute-sanitizer not found",
            env=env,
        ),
        Step(
            "training-step",
            "the measured Bi-Mask training step, real shapes, every backend",
            [
                py,
                "-m",
                "suite",
                "step",
                "--device",
                "cuda",
                "--full-shapes",
                "--time-budget",
                f"{STEP_LIMIT_S - STARTUP_S - REPORT_S:.0f}",
                "--quiet",
                "--out",
                str(out / "step"),
            ],
            STEP_LIMIT_S,
            STEP_LIMIT_S - 10,  # it plans its rows into its budget and uses most of it
            env=env,
            needs=training,
        ),
    ]


def summary_markdown(
    device: str, results: list[StepResult], headline: pd.DataFrame | None, notes: tuple = ()
):
    from tabulate import tabulate

    lines = [
        f"# First look: {device}",
        *([""] + [f"- {n}" for n in notes] if notes else []),
        "",
        "| step | status | seconds | limit |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name}: {r.title} | {r.status} | {r.seconds:.0f} | {r.limit_s:.0f} |")
    lines.append("")
    if headline is not None and len(headline):
        lines += ["## Headline (best config per backend; x_cublas: cuBLAS time / this time)", ""]
        lines.append(tabulate(headline, headers="keys", tablefmt="github", showindex=False))
    else:
        lines.append("No headline rows: the benchmark steps did not finish.")
    failed = [r for r in results if r.status in ("failed", "timed out")]
    for r in failed:
        lines += ["", f"## {r.name}: {r.status}", "", "```", r.detail, "```"]
    return "\n".join(lines) + "\n"


def finish(out: Path, device: str, results: list[StepResult], notes: tuple = ()) -> Path:
    """Write summary.md from steps.csv and headline.csv, then pack the folder."""
    headline = pd.read_csv(out / HEADLINE) if (out / HEADLINE).is_file() else None
    text = summary_markdown(device, results, headline, notes)
    record = next(iter(sorted((out / "logs").glob("*-device.log"))), None)
    if record is not None:  # the device step's output: NVML record, backends available
        text += (
            "\n## Device record\n\n```\n" + record.read_text(errors="replace")[:6000] + "\n```\n"
        )
    tmp = out / "summary.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "summary.md")
    return pack(out, "first-look.tar.gz")


def run(
    out: Path, steps: list[Step], budget_s: float, device: str, notes: tuple = ()
) -> tuple[list, Path]:
    results = run_steps(steps, out, budget_s, cwd=ROOT)
    return results, finish(out, device, results, notes)


def cache_notes(steps: list[Step]) -> tuple[str, ...]:
    """The toolchain and how much of what the steps launch the kernel cache holds."""
    from kernels.aot import missing
    from kernels.build import CACHE_DIR, nvcc_path, toolchain

    needed = list(dict.fromkeys(b for s in steps for b in s.needs))
    held = len(needed) - len(missing(needed))
    return (
        f"toolchain {toolchain()}, nvcc {'at ' + nvcc_path() if nvcc_path() else 'absent'}",
        f"kernel cache {CACHE_DIR}: {held} of the {len(needed)} kernels the steps launch "
        "(each step's log says how many it took from the cache and how many it compiled)",
    )


def dry_run(steps: list[Step], budget_s: float) -> tuple[str, bool]:
    """The plan as text, and whether it can run (no missing kernel, fits the budget)."""
    from kernels.aot import missing

    builds_missing = missing(list(dict.fromkeys(b for s in steps for b in s.needs)))
    total = sum(s.estimate_s for s in steps if not s.skip)
    lines = [f"{'step':<14} {'limit s':>8} {'est. s':>8}  {'kernels':>12}  what"]
    for s in steps:
        what = f"skipped: {s.skip}" if s.skip else s.title
        gap = sum(b in builds_missing for b in s.needs)
        held = f"{len(s.needs) - gap}/{len(s.needs)} cached" if s.needs else "-"
        lines.append(f"{s.name:<14} {s.limit_s:>8.0f} {s.estimate_s:>8.0f}  {held:>12}  {what}")
    lines.append(f"estimated total {total:.0f} s of a {budget_s:.0f} s budget")
    ok = total + RESERVE_S <= budget_s
    if not ok:
        lines.append("PLAN DOES NOT FIT: raise --budget or run fewer steps")
    if builds_missing:
        ok = False
        lines.append(f"{len(builds_missing)} kernel(s) the run needs are not in the cache:")
        lines += [f"  {b.label()}: {why}" for b, why in list(builds_missing.items())[:10]]
        lines.append("build them with: python -m kernels build --for-device NAME --out DIR")
    else:
        lines.append("every kernel the run needs is in the cache")
    return "\n".join(lines), ok


def _target(args) -> tuple[str, tuple[int, int]]:
    import torch

    from kernels.aot import device_cc

    if args.for_device:
        return args.for_device, device_cc(args.for_device)
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(), torch.cuda.get_device_capability()
    raise ValueError("no CUDA device here: name the target with --for-device (e.g. H100)")


def command(args) -> int:
    """``python -m suite first-look`` (arguments from suite.cli)."""
    import torch

    from kernels.build import use_cache_dir

    if args.budget <= 0:
        raise ValueError(f"--budget must be > 0 seconds, got {args.budget:g}")
    cache = use_cache_dir(args.kernel_cache, existing=True) if args.kernel_cache else None
    if not args.dry_run and not torch.cuda.is_available():
        raise ValueError(
            "first-look runs on a GPU host; here, see its plan with --dry-run --for-device NAME"
        )
    if not args.dry_run and args.for_device:
        raise ValueError("--for-device goes with --dry-run; a run plans for the GPU it runs on")
    device, cc = _target(args)
    out = Path(args.out).resolve()
    check_output_dir(out, "--out")  # a folder that is new or empty: checked before anything
    wanted = args.steps or DEFAULT_STEPS
    steps = [s for s in plan(out, cc, cache) if s.name in wanted]
    if args.dry_run:
        text, ok = dry_run(steps, args.budget)
        print(f"first look for {device} (compute capability {cc[0]}.{cc[1]}) -> {out}")
        print(text)
        return 0 if ok else 1
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty: give a new folder (nothing was written)")
    results, archive = run(out, steps, args.budget, device, cache_notes(steps))
    for r in results:
        print(f"{r.name:<14} {r.status:<10} {r.seconds:6.0f} s")
    print(f"summary {out / 'summary.md'}; everything in {archive}")
    return 0 if all(r.status in ("ok", "skipped") for r in results) else 1


def add_parser(sub, fmt) -> None:
    """``python -m suite first-look`` on the suite's command line."""
    import time

    from bimask import cli_args as ca

    f = sub.add_parser(
        "first-look",
        formatter_class=fmt,
        help="a time-boxed first look at a GPU: correctness, headline GEMMs, tests, one archive",
        epilog="example: python -m suite first-look\n"
        "         python -m suite first-look --dry-run --for-device H100 --kernel-cache /tmp/kc\n"
        "         python -m suite first-look --steps memcheck training-step --budget 200"
        "   # a second run",
    )
    f.add_argument(
        "--out",
        default=f"runs/first-look/{time.strftime('%Y%m%d-%H%M%S')}",
        help="a new folder for the results (default runs/first-look/<date-time>)",
    )
    f.add_argument(
        "--budget",
        type=ca.positive_float,
        default=BUDGET_S,
        help=f"seconds in all (default {BUDGET_S:.0f})",
    )
    f.add_argument("--kernel-cache", help="kernels built ahead of time (python -m kernels build)")
    f.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    f.add_argument("--for-device", help="plan for this GPU (e.g. H100) instead of the local one")
    f.add_argument(
        "--steps",
        nargs="+",
        choices=STEP_NAMES,
        help="run only these steps, in plan order (default: all but training-step)",
    )
    f.set_defaults(func=command)
