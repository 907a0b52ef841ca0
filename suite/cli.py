"""python -m suite: bench, tune, report, export, compare, baseline, devices."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from bimask import PERMUTATIONS
from suite import budget as bench_budget
from suite import store
from suite.backends import BACKENDS, get_backend
from suite.cache import CacheMismatchError, ResultCache
from suite.device import capture, fingerprint
from suite.plan import make_plan
from suite.problem import PASSES, GemmProblem
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


def _shard(text: str | None) -> tuple[int, int]:
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))  # launched by torchrun: one shard a rank
        return int(os.environ.get("RANK", "0")), world
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SystemExit(f"error: --shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise SystemExit(f"error: --shard {text}: need 0 <= i < n")
    return i, n


def cmd_bench(args) -> int:
    tier = args.tier
    if tier == "auto":
        tier = "gpu" if torch.cuda.is_available() else "cpu"
    if tier == "gpu" and not torch.cuda.is_available() and not args.plan:
        raise SystemExit("error: --tier gpu needs a CUDA device; use --tier cpu (or --plan)")
    time_budget = bench_budget.bench_budget(args, tier)
    layer_tier = "quick" if args.quick else tier
    patterns, perms, dtype, budget = TIER_DEFAULTS[layer_tier]
    if args.perms and (unknown := set(args.perms) - set(PERMUTATIONS)):
        raise SystemExit(
            f"error: unknown permutation strategy {sorted(unknown)}; choose from "
            f"{sorted(PERMUTATIONS)}"
        )
    device = "cuda" if tier == "gpu" else "cpu"
    if args.backends and (unknown := [b for b in args.backends if b not in BACKENDS]):
        raise SystemExit(f"error: unknown backend {unknown}; choose from {sorted(BACKENDS)}")
    backends = tuple(
        b.name
        for b in bench_budget.candidate_backends(device, args.plan)
        if args.backends is None or b.name in args.backends
    )
    if args.backends and not backends:
        why = {b: BACKENDS[b].available() or f"runs on {BACKENDS[b].device}" for b in args.backends}
        raise SystemExit(f"error: none of the requested backends runs here: {why}")
    strategy, max_evals = args.strategy, args.max_evals
    if (
        strategy is None
    ):  # our GPU kernels' spaces hold hundreds of configs: search, don't enumerate
        strategy, max_evals = (
            ("annealing", max_evals or 48) if tier == "gpu" else ("brute_force", max_evals)
        )
    spec = SweepSpec(
        tuple(benchmark_layers(layer_tier, args.shapes)),
        tuple(args.patterns or patterns),
        tuple(args.perms or perms),
        backends,
        dtype,
        device,
        TuneSettings(strategy, max_evals, None, args.seed, budget_s=args.budget_s or budget),
        passes=tuple(args.passes or PASSES),
        space=bench_budget.default_space(args.space, time_budget),
    )
    shard = _shard(args.shard)
    out = Path(args.out)
    out_shard = out / f"shard-{shard[0]}" if shard[1] > 1 else out
    cache_path = Path(args.cache or out_shard / "cache.jsonl")
    if args.plan:  # prints the plan; creates, changes and runs nothing
        print(bench_budget.print_plan(spec, cache_path, device, shard, time_budget))
        return 0
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
        shards = sorted(out.glob("shard-*"))
        store.merge_runs(shards, out, meta)
        df, meta = store.load(out)
    from suite.report import write_report

    path = write_report(df, {**meta, **store.load(out)[1]}, out)
    print(f"{len(df)} rows -> {out / 'results.csv'}; report {path}")
    return 0


def cmd_tune(args) -> int:
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
    settings = TuneSettings(args.strategy, args.max_evals, args.max_seconds, args.seed)
    if args.simulate:
        cache = ResultCache(args.simulate, None, replay=True)
        from suite.simulate import simulated_tune

        rows = simulated_tune(problem, backend, cache, settings)
    else:
        device = backend.device
        if why := backend.available():
            raise SystemExit(f"error: backend {backend.name} is not available here: {why}")
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
    shards = sorted(run.glob("shard-*"))
    if shards and not (run / "results.csv").exists():
        store.merge_runs(shards, run, store.load(shards[0])[1])
    df, meta = store.load(run)
    print(write_report(df, meta, run if run.is_dir() else run.parent))
    return 0


def cmd_export(args) -> int:
    from suite.export import write
    from suite.report import best_table

    df, _ = store.load(args.run)
    table = best_table(df) if args.best else df
    print(write(table, args.out, args.format))
    return 0


def cmd_compare(args) -> int:
    from suite.compare import best_only, compare, geomean_ratio, regressed, summary_table
    from suite.export import render

    base, _ = store.load(args.base)
    new, _ = store.load(args.new)
    if args.best_only:
        base, new = best_only(base), best_only(new)
    table = compare(base, new, args.threshold, args.noise_k)
    counts = table.verdict.value_counts().to_dict()
    print(
        f"compared {len(table)} rows: {json.dumps(counts)}; "
        f"geometric mean new/base {geomean_ratio(table):.3f}"
    )
    moved = summary_table(table)
    if len(moved):
        print(render(moved, "md"))
    if regressed(table, args.gate, args.threshold):
        what = (
            "the geometric mean slowed by more than"
            if args.gate == "geomean"
            else "slower beyond the noise by more than"
        )
        print(f"REGRESSION: {what} {args.threshold:.0%}, or a config broke")
        return 1
    print(f"no regression (gate: {args.gate}, threshold {args.threshold:.0%})")
    return 0


def cmd_baseline(args) -> int:
    runs = [Path(r) for r in args.runs]
    df = store.median_of_runs(runs)
    meta = store.load(runs[0])[1]
    path = store.save(
        df,
        args.out,
        {"baseline_of": [str(r) for r in runs], "device_before": meta.get("device_before", {})},
    )
    print(f"baseline of {len(runs)} runs, {len(df)} rows -> {path}")
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
    b.add_argument("--out", default="results/bench/latest")
    b.add_argument("--cache", help="cache file (default OUT/cache.jsonl); resumes a killed run")
    b.add_argument("--shapes", help="a shapes TOML file (default: suite/shapes/benchmark.toml)")
    b.add_argument("--patterns", nargs="+")
    b.add_argument("--backends", nargs="+", help="restrict to these backends")
    b.add_argument("--passes", nargs="+", choices=PASSES, help="restrict to these GEMMs")
    b.add_argument("--perms", nargs="+", help="permutation strategies for bwd-data")
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
        help="default: brute_force on CPU, annealing (48 evaluations) on GPU",
    )
    b.add_argument("--max-evals", type=int, help="configs per (problem, backend)")
    b.add_argument("--budget-s", type=float, help="timing budget per config (tier default)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--shard", help="i/n: run every n-th task starting at i")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser(
        "tune",
        formatter_class=fmt,
        help="tune one GEMM on one backend",
        epilog="example: python -m suite tune --backend torch_dense --m 3072 "
        "--n 256 --k 768 --pattern 2:4\n"
        "         python -m suite tune --simulate tests/data/sim_cache.jsonl "
        "--backend torch_dense --m 512 --n 256 --k 512 --strategy annealing",
    )
    t.add_argument("--backend", required=True)
    t.add_argument("--m", type=int, required=True)
    t.add_argument("--n", type=int, required=True)
    t.add_argument("--k", type=int, required=True)
    t.add_argument("--pattern", default="2:4")
    t.add_argument("--pass", dest="pass_", choices=PASSES, default="fwd")
    t.add_argument("--perm", default="-")
    t.add_argument("--dtype", default="float32")
    t.add_argument("--strategy", choices=sorted(STRATEGIES), default="brute_force")
    t.add_argument("--max-evals", type=int)
    t.add_argument("--max-seconds", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cache")
    t.add_argument("--simulate", help="replay timings from this cache file; runs nothing")
    t.set_defaults(func=cmd_tune)

    r = sub.add_parser(
        "report",
        help="(re)write report.md of a run (merges shards)",
        epilog="example: python -m suite report results/bench/latest",
    )
    r.add_argument("run")
    r.set_defaults(func=cmd_report)

    e = sub.add_parser(
        "export",
        help="export a run as csv / md / latex / html",
        epilog="example: python -m suite export results/bench/latest --best --out best.tex",
    )
    e.add_argument("run")
    e.add_argument("--out", required=True)
    e.add_argument("--format", choices=["csv", "md", "latex", "html"])
    e.add_argument("--best", action="store_true", help="only the best config per problem")
    e.set_defaults(func=cmd_export)

    c = sub.add_parser(
        "compare",
        help="compare two runs; exit 1 on a regression",
        epilog="example: python -m suite compare results/baseline.csv new/results.csv",
    )
    c.add_argument("base")
    c.add_argument("new")
    c.add_argument("--threshold", type=float, default=0.05)
    c.add_argument("--noise-k", type=float, default=1.0, help="spread multiplier for noise")
    c.add_argument("--best-only", action="store_true", help="compare each problem's best config")
    c.add_argument(
        "--gate",
        choices=["any", "geomean"],
        default="any",
        help="fail on any slower row (default) or on the geometric mean of all rows",
    )
    c.set_defaults(func=cmd_compare)

    bl = sub.add_parser(
        "baseline",
        help="a baseline from several runs (per-row median)",
        epilog="example: python -m suite baseline results/ci/suite-quick r1 r2 r3",
    )
    bl.add_argument("out")
    bl.add_argument("runs", nargs="+")
    bl.set_defaults(func=cmd_baseline)

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
