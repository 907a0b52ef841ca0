"""python -m suite: bench, tune, report, export, compare, baseline, first-look, search-bench,
step, devices."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from bimask import PERMUTATIONS
from bimask import cli_args as ca
from bimask.outputs import check_input_file, check_output_dir, check_output_file
from kernels import build as kernel_build
from suite import (
    advise,
    first_look,
    landscapes,
    run_folder,
    search_cli,
    shards,
    step_cli,
    store,
    tuned_export,
    warm,
)
from suite import budget as bench_budget
from suite.backends import BACKENDS, get_backend
from suite.cache import CacheMismatchError, ResultCache
from suite.device import capture, fingerprint
from suite.plan import make_plan
from suite.problem import DTYPES, PASSES, GemmProblem
from suite.shapes import benchmark_layers
from suite.strategies import STRATEGIES
from suite.sweep import SweepSpec, run_sweep
from suite.tuner import TuneSettings, tune

TIER_DEFAULTS = {  # patterns, permutation strategies, dtype, timing budget per config (s)
    "quick": (("2:4",), ("identity", "greedy"), "float32", 0.1),
    "cpu": (("2:4", "1:4", "4:8"), ("identity", "random", "greedy"), "float32", 0.3),
    "gpu": (
        ("2:4", "1:4", "2:8", "4:8", "1:16"),
        ("identity", "random", "greedy"),
        "bfloat16",
        1.0,
    ),
}


def _shard(given: tuple[int, int] | None) -> tuple[int, int]:
    if given is not None:  # --shard, already checked by ca.shard
        return given
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    return ca.check(f"{rank}/{world}", ca.shard, "RANK/WORLD_SIZE (set by torchrun)")


def cmd_bench(args) -> int:
    run_folder.check(args.out, args.cache)
    warm_opts = warm.spec_options(args)  # reads --warm-from: a bad file is an error here
    if args.kernel_cache:
        kernel_build.use_cache_dir(args.kernel_cache, existing=True)
    tier = args.tier
    if tier == "auto":
        tier = "gpu" if torch.cuda.is_available() else "cpu"
    if tier == "gpu" and not torch.cuda.is_available() and not args.plan:
        raise ca.UsageError("--tier gpu needs a CUDA device; use --tier cpu (or --plan)")
    time_budget = bench_budget.bench_budget(args, tier)
    layer_tier = "quick" if args.quick else tier
    patterns, perms, dtype, budget = TIER_DEFAULTS[layer_tier]
    device = "cuda" if tier == "gpu" else "cpu"
    backends = tuple(
        b.name
        for b in bench_budget.candidate_backends(device, args.plan)
        if args.backends is None or b.name in args.backends
    )
    if args.backends and not backends:
        why = {b: BACKENDS[b].available() or f"runs on {BACKENDS[b].device}" for b in args.backends}
        raise ca.UsageError(f"none of the requested backends runs here: {why}")
    strategy, max_evals = args.strategy, args.max_evals
    if (
        strategy is None
    ):  # our GPU kernels' spaces hold hundreds of configs: search, don't enumerate
        strategy, max_evals = (
            ("tpe", max_evals or 48) if tier == "gpu" else ("brute_force", max_evals)
        )
    budget_s = budget if args.budget_s is None else args.budget_s
    spec = SweepSpec(
        tuple(benchmark_layers(layer_tier, args.shapes)),
        tuple(args.patterns or patterns),
        tuple(args.perms or perms),
        backends,
        dtype,
        device,
        TuneSettings(strategy, max_evals, None, args.seed, budget_s=budget_s),
        passes=tuple(args.passes or PASSES),
        space=bench_budget.default_space(args.space, time_budget),
        **warm_opts,
    )
    shard = _shard(args.shard)
    out = Path(args.out)
    out_shard = out / f"shard-{shard[0]}" if shard[1] > 1 else out
    cache_path = Path(args.cache) if args.cache else out_shard / "cache.jsonl"
    if args.plan:  # prints the plan; creates, changes and runs nothing
        print(bench_budget.print_plan(spec, cache_path, device, shard, time_budget))
        return 0
    if args.fresh and (aside := run_folder.move_aside(cache_path)):
        print(f"--fresh: moved the old cache to {aside}", file=sys.stderr)
    cache = ResultCache(cache_path, fingerprint(device))
    plan = make_plan(spec, cache, shard, time_budget)
    before = capture(device)
    df = run_sweep(plan.spec, cache, shard, progress=not args.no_progress, plan=plan)
    meta = {
        "tier": tier if not args.quick else f"{tier} (quick)",
        "device_before": before,
        "device_after": capture(device),
        "fingerprint": fingerprint(device),
        "shard": list(shard),
        "backends": list(backends),
        **plan.meta(),
        **warm.search_meta(plan.spec),
    }
    store.save(df, out_shard, meta)
    bench_budget.write_skipped(plan, out_shard)
    if line := bench_budget.skipped_line(plan):
        print(line)
    if shard[1] > 1:
        if os.environ.get("WORLD_SIZE"):
            import torch.distributed as dist

            dist.init_process_group("gloo")
            dist.barrier()  # every shard has written its results
            is_main = dist.get_rank() == 0
            dist.destroy_process_group()
            if not is_main:
                return 0
        else:
            print(
                f"wrote shard {shard[0]}/{shard[1]} to {out_shard}; merge with "
                f"'python -m suite report {out}' once every shard is done"
            )
            return 0
        shards.merge_shards(out)
        df, meta = store.load(out)
    from suite.report import write_report

    path = write_report(df, {**meta, **store.load(out)[1]}, out)
    print(f"{len(df)} rows -> {out / 'results.csv'}; report {path}")
    if kernel_build.STATS["cached"] or kernel_build.STATS["compiled"]:
        print(kernel_build.stats_line())
    return 0


def cmd_tune(args) -> int:
    settings = TuneSettings(args.strategy, args.max_evals, args.max_seconds, args.seed)
    if args.simulate and landscapes.is_landscape(args.simulate):
        return search_cli.tune_landscape(args.simulate, settings)
    if missing := [f"--{a}" for a in ("backend", "m", "n", "k") if getattr(args, a) is None]:
        raise ca.UsageError(
            f"{', '.join(missing)} missing; give them (only --simulate LANDSCAPE runs without)"
        )
    backend = get_backend(args.backend)
    problem = GemmProblem(
        "nm_gemm" if args.pattern != "dense" else "gemm",
        args.pass_,
        args.m,
        args.n,
        args.k,
        args.dtype,
        args.pattern,
        args.perm,
        args.seed,
        "cli",
    )
    if args.cache:
        check_output_file(args.cache, "--cache", make_parents=True)
    if args.simulate:
        check_input_file(args.simulate, "--simulate")
        cache = ResultCache(args.simulate, None, replay=True)
        from suite.simulate import simulated_tune

        rows = simulated_tune(problem, backend, cache, settings)
    else:
        device = backend.device
        if why := backend.available():
            raise ca.UsageError(f"backend {backend.name} is not available here: {why}")
        cache = ResultCache(args.cache, fingerprint(device)) if args.cache else None
        rows = tune(problem, backend, cache, settings, device)
    for r in sorted(rows, key=lambda r: (r["status"] != "ok", r["median_ms"])):
        mark = "*" if r.get("is_best") else ("=" if r.get("tie_with_best") else " ")
        print(
            f"{mark} {r['config']:<50} {r['status']:<12} {r['median_ms']:10.4f} ms  "
            f"{r['tflops']:8.3f} TFLOP/s  {r['reason']}"
        )
    return 0


def cmd_report(args) -> int:
    from suite.report import write_report

    run = Path(args.run)
    out = run if run.is_dir() else run.parent
    check_output_dir(out, "the run folder")
    if run.is_dir() and shards.shard_dirs(run):
        shards.merge_shards(run, partial=args.partial)
    df, meta = store.load(run)
    if note := shards.partial_note(meta):
        print(note.strip("*"), file=sys.stderr)
    print(write_report(df, meta, out))
    return 0


def cmd_export(args) -> int:
    from suite.export import write
    from suite.report import best_table

    check_output_file(args.out, "--out")
    df, _ = store.load(args.run)
    table = best_table(df) if args.best else df
    print(write(table, args.out, args.format))
    return 0


def cmd_compare(args) -> int:
    from suite import compare as cmp
    from suite.export import render

    cmp.check_limits(args.threshold, args.noise_k)
    base, base_meta = store.load(args.base)
    new, new_meta = store.load(args.new)
    runs = [cmp.run_info(base, base_meta, args.base), cmp.run_info(new, new_meta, args.new)]
    notes = []
    try:
        cmp.check_same_device(runs, "pass --allow-cross-device to compare them anyway")
    except cmp.CompareError as err:
        if not args.allow_cross_device:
            raise
        notes.append(f"note: {str(err).split('; ')[0]} (--allow-cross-device)")
    settings, line = cmp.choose(
        runs,
        best_only=args.best_only,
        gate=args.gate,
        threshold=args.threshold,
        noise_k=args.noise_k,
    )
    if settings.best_only:
        base, new = cmp.best_only(base), cmp.best_only(new)
    cover = cmp.coverage(base, new)
    if not cover["both"]:
        raise cmp.CompareError(
            f"the two runs have no row in common ({runs[0].describe()}; {runs[1].describe()}); "
            "compare two runs of the same sweep (tier, shapes, backends, patterns)"
        )
    table = cmp.compare(base, new, settings.threshold, settings.noise_k)
    timed, broke = cmp.timed_in_both(table), table.verdict.eq("broken").any()
    if not timed and not broke:
        raise cmp.CompareError(
            f"none of the {len(table)} rows the runs share was timed in both "
            f"({table.verdict.value_counts().to_dict()}); compare runs whose configs ran"
        )
    for note in [*notes, line]:
        print(note)
    counts = table.verdict.value_counts().to_dict()
    print(
        f"compared {len(table)} rows ({cover['left_only']} only in base, {cover['right_only']} "
        f"only in new): {json.dumps(counts)}; geometric mean new/base "
        f"{cmp.geomean_ratio(table):.3f} (standard error {cmp.geomean_stderr(table):.1%} over "
        f"{timed} timed rows)"
    )
    moved = cmp.summary_table(table)
    if len(moved):
        print(render(moved, "md"))
    if cmp.regressed(table, settings.gate, settings.threshold, settings.noise_k):
        what = (
            "the geometric mean slowed by more than"
            if settings.gate == "geomean"
            else "slower beyond the noise by more than"
        )
        print(f"REGRESSION: {what} {settings.threshold:.0%}, or a config broke")
        return 1
    print(f"no regression (gate: {settings.gate}, threshold {settings.threshold:.0%})")
    return 0


def cmd_baseline(args) -> int:
    from suite import compare as cmp

    out = Path(args.out)
    seen: dict[Path, str] = {}
    for run in args.runs:
        csv = Path(run) / "results.csv" if Path(run).is_dir() else Path(run)
        if csv.resolve() == (out / "results.csv").resolve():
            raise cmp.CompareError(
                f"the output {out} is one of the input runs ({run}); write the baseline to a "
                "new folder"
            )
        if csv.resolve() in seen:
            raise cmp.CompareError(f"run {run} is given twice (also as {seen[csv.resolve()]})")
        seen[csv.resolve()] = run
    if out.exists() and not out.is_dir():
        raise cmp.CompareError(f"the output {out} is a file; give a folder for the baseline")
    loaded = [store.load(run) for run in args.runs]
    infos = [cmp.run_info(df, meta, r) for (df, meta), r in zip(loaded, args.runs, strict=True)]
    cmp.check_same_device(infos, "a baseline takes runs of one device")
    check_output_dir(args.out, "OUT")
    runs = [Path(r) for r in args.runs]
    df = store.median_of_runs(runs)
    meta = loaded[0][1]
    path = store.save(
        df,
        out,
        {
            "baseline_of": [str(r) for r in runs],
            "device_before": meta.get("device_before", {}),
            **({"fingerprint": meta["fingerprint"]} if meta.get("fingerprint") else {}),
        },
    )
    print(f"baseline of {len(runs)} run(s), {len(df)} rows -> {path}")
    return 0


def cmd_devices(args) -> int:
    print(json.dumps(capture("cpu"), indent=2))
    for i in range(torch.cuda.device_count()):
        from suite.device import gpu_record

        print(json.dumps(gpu_record(i), indent=2))
    print("backends:")
    for b in BACKENDS.values():
        why = b.available()
        print(
            f"  {b.name:<14} {b.device:<5} {'available' if why is None else 'unavailable: ' + why}"
        )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m suite", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    b = sub.add_parser(
        "bench",
        formatter_class=fmt,
        help="run the sweep for this machine",
        epilog="example: python -m suite bench --tier cpu --quick --out /tmp/b\n"
        "         python -m suite bench --tier gpu --plan\n"
        "         python -m suite bench --tier cpu --quick --time-budget 20 --out /tmp/b20\n"
        "         torchrun --nproc_per_node=2 -m suite bench --out runs/b",
    )
    b.add_argument("--tier", choices=["auto", "cpu", "gpu"], default="auto")
    b.add_argument("--quick", action="store_true", help="the < 1 minute profile")
    b.add_argument("--out", default="runs/bench/latest")
    b.add_argument(
        "--cache", help="cache file (default OUT/cache.jsonl); a run resumes from it by default"
    )
    b.add_argument(
        "--fresh",
        action="store_true",
        help="start afresh: move the old cache aside (to CACHE.old-<time>) once the arguments "
        "are checked",
    )
    b.add_argument(
        "--shapes",
        type=ca.existing_file,
        help="a shapes TOML file (default: suite/shapes/benchmark.toml)",
    )
    b.add_argument("--patterns", nargs="+", type=ca.pattern, help="N:M patterns, e.g. 2:4 1:16")
    b.add_argument(
        "--backends",
        nargs="+",
        choices=sorted(BACKENDS),
        metavar="BACKEND",
        help="restrict to these backends (see 'python -m suite devices')",
    )
    b.add_argument("--passes", nargs="+", choices=PASSES, help="restrict to these GEMMs")
    b.add_argument(
        "--perms",
        nargs="+",
        choices=sorted(PERMUTATIONS),
        metavar="PERM",
        help=f"permutation strategies for bwd-data: {', '.join(sorted(PERMUTATIONS))}",
    )
    b.add_argument(
        "--space",
        choices=["full", "quick"],
        help="quick: a handful of known-good configs per backend (a time-bounded first look); "
        "default: full, or quick where the full spaces do not fit a --time-budget",
    )
    b.add_argument(
        "--time-budget",
        metavar="SECONDS",
        help="plan the sweep to fit this many seconds: headline shapes and patterns first, the "
        f"rest while it fits, skipped tasks listed in skipped.csv (default: "
        f"{bench_budget.DEFAULT_TIME_BUDGET_S['gpu']:.0f} on the gpu tier, none on cpu)",
    )
    b.add_argument("--full", action="store_true", help="the whole sweep, no time budget")
    b.add_argument(
        "--plan",
        action="store_true",
        help="print the plan (tasks, estimated seconds, what a budget skips) and run nothing; "
        "works for --tier gpu without a GPU",
    )
    b.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        help="default: brute_force on CPU, tpe (48 evaluations) on GPU",
    )
    b.add_argument("--max-evals", type=ca.positive_int, help="configs per (problem, backend)")
    b.add_argument(
        "--budget-s", type=ca.positive_float, help="timing budget per config (tier default)"
    )
    b.add_argument("--seed", type=ca.nonneg_int, default=0)
    warm.add_options(b)
    b.add_argument(
        "--shard", type=ca.shard, metavar="I/N", help="run every n-th task starting at i"
    )
    b.add_argument("--kernel-cache", help="kernels built ahead of time (python -m kernels build)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser(
        "tune",
        formatter_class=fmt,
        help="tune one GEMM on one backend",
        epilog="example: python -m suite tune --backend torch_dense --m 3072 "
        "--n 256 --k 768 --pattern 2:4\n"
        "         python -m suite tune --simulate tests/data/sim_cache.jsonl "
        "--backend torch_tiled --m 256 --n 512 --k 512 --strategy annealing --max-evals 12\n"
        "         python -m suite tune --simulate benchmarks/landscapes/pnpoly_RTX3090.json "
        "--strategy tpe --max-evals 48 --seed 1",
    )
    t.add_argument(
        "--backend", choices=sorted(BACKENDS), metavar="BACKEND", help="e.g. torch_dense"
    )
    t.add_argument("--m", type=ca.positive_int)
    t.add_argument("--n", type=ca.positive_int)
    t.add_argument("--k", type=ca.positive_int)
    t.add_argument("--pattern", type=ca.pattern_or_dense, default="2:4", help="N:M or dense")
    t.add_argument("--pass", dest="pass_", choices=PASSES, default="fwd")
    t.add_argument(
        "--perm",
        choices=["-", *sorted(PERMUTATIONS)],
        default="-",
        help="bwd-data permutation strategy",
    )
    t.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    t.add_argument("--strategy", choices=sorted(STRATEGIES), default="brute_force")
    t.add_argument("--max-evals", type=ca.positive_int)
    t.add_argument("--max-seconds", type=ca.positive_float)
    t.add_argument("--seed", type=ca.nonneg_int, default=0)
    t.add_argument("--cache")
    t.add_argument(
        "--simulate",
        type=ca.existing_file,
        help="replay timings from this cache file, or from a landscape (NAME.csv.gz or "
        "NAME.json, see benchmarks/landscapes/); runs nothing",
    )
    t.set_defaults(func=cmd_tune)

    r = sub.add_parser(
        "report",
        help="(re)write report.md of a run (merges shards)",
        epilog="example: python -m suite report runs/bench/latest\n"
        "         python -m suite report runs/b --partial    # while shards are missing",
        formatter_class=fmt,
    )
    r.add_argument("run")
    r.add_argument(
        "--partial",
        action="store_true",
        help="report the shards that are done when some are missing (labelled partial)",
    )
    r.set_defaults(func=cmd_report)

    e = sub.add_parser(
        "export",
        help="export a run as csv / md / latex / html",
        epilog="example: python -m suite export runs/bench/latest --best --out best.tex",
    )
    e.add_argument("run")
    e.add_argument("--out", required=True)
    e.add_argument("--format", choices=["csv", "md", "latex", "html"])
    e.add_argument("--best", action="store_true", help="only the best config per problem")
    e.set_defaults(func=cmd_export)

    c = sub.add_parser(
        "compare",
        formatter_class=fmt,
        help="compare two runs of one device; exit 1 on a regression",
        description="Compare two runs. Defaults depend on the device: on GPUs every config with "
        "a per-row gate at 5%; on CPUs (whose whole-run speed drifts) each problem's best config "
        "with a geometric-mean gate at 30%, as make bench-ci does. Options override them.",
        epilog="example: python -m suite compare results/ci/suite-quick "
        "results/reference/bench/cpu\n"
        "         python -m suite compare results/ci/suite-quick results/reference/bench/cpu "
        "--gate any --no-best-only --threshold 0.1",
    )
    c.add_argument("base")
    c.add_argument("new")
    c.add_argument(
        "--threshold",
        type=float,
        help="relative slowdown that counts, in (0, 10] (default 0.05 on GPUs, 0.3 on CPUs)",
    )
    c.add_argument(
        "--noise-k", type=float, help="spread multiplier for noise, in [0, 10] (default 1)"
    )
    c.add_argument(
        "--best-only",
        action=argparse.BooleanOptionalAction,
        help="compare each problem's best config (default on CPUs)",
    )
    c.add_argument(
        "--gate",
        choices=["any", "geomean"],
        help="fail on any slower row (default on GPUs) or on the geometric mean of all rows "
        "(default on CPUs)",
    )
    c.add_argument(
        "--allow-cross-device",
        action="store_true",
        help="compare runs measured on different devices",
    )
    c.set_defaults(func=cmd_compare)

    bl = sub.add_parser(
        "baseline",
        help="a baseline from one or more runs of one device (per-row median)",
        formatter_class=fmt,
        epilog="example: python -m suite baseline /tmp/base results/reference/bench/cpu\n"
        "(a baseline is usually the median of three runs of one device: OUT R1 R2 R3)",
    )
    bl.add_argument("out")
    bl.add_argument("runs", nargs="+")
    bl.set_defaults(func=cmd_baseline)

    first_look.add_parser(sub, fmt)

    search_cli.add_parser(sub, fmt)
    tuned_export.add_parser(sub, fmt)
    step_cli.add_parser(sub, fmt)
    advise.add_parser(sub, fmt)

    d = sub.add_parser("devices", help="show the device records and which backends run here")
    d.set_defaults(func=cmd_devices)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, CacheMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
