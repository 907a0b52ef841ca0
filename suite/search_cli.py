"""The command lines of the simulation harness: ``tune --simulate LANDSCAPE`` and
``search-bench`` (kept here so suite.cli only wires them in)."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

from bimask import cli_args as ca
from bimask.outputs import check_output_dir
from suite import landscapes, search_bench
from suite.simulate import landscape_rows, simulate_landscape
from suite.strategies import STRATEGIES
from suite.tuner import TuneSettings

BENCH_STRATEGIES = ("random_sample", "annealing", "population_tabu", "tpe")
GEMM_WARM = {  # the same CLBlast GEMM kernel and space on three GPUs: warm from another one
    "gemm_RTX2080Ti": "gemm_TITANRTX",
    "gemm_TITANRTX": "gemm_RTX2080Ti",
    "gemm_RTX3090": "gemm_TITANRTX",
}


def tune_landscape(path: str, settings: TuneSettings) -> int:
    """``tune --simulate LANDSCAPE``: one search on a landscape, printed like ``tune``."""
    land = landscapes.load(path)
    objective = simulate_landscape(land, settings)
    rows = landscape_rows(land, objective)
    for r in sorted(rows, key=lambda r: r["median_ms"]):
        mark = "*" if r["is_best"] else " "
        print(
            f"{mark} {r['config']:<60} {r['status']:<8} {r['median_ms']:10.4f} ms  "
            f"{r['ratio']:7.3f} x optimum"
        )
    _, best = objective.best()
    print(
        f"{land.name}: {settings.strategy}, {len(rows)} evaluations, best {best:.4f} ms = "
        f"{best / land.best_ms:.3f} x the optimum {land.best_ms:.4f} ms of {len(land.space)} "
        "configs"
    )
    return 0


def cmd_search_bench(args) -> int:
    size = search_bench.SIZES["quick" if args.quick else "default"]
    budgets = tuple(args.budgets or size["budgets"])
    seeds = args.seeds or size["seeds"]
    out = Path(args.out)
    check_output_dir(out, "--out")
    lands = landscapes.load_all(args.landscapes or [landscapes.DEFAULT_DIR])
    by_name = {land.name: land for land in lands}
    warm = None
    if args.warm:
        warm = {t: by_name[s] for t, s in GEMM_WARM.items() if t in by_name and s in by_name}
        if not warm:
            raise ca.UsageError("--warm: no GEMM landscape pair given; add benchmarks/landscapes")
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    cells = search_bench.run_bench(lands, list(args.strategies), budgets, seeds, warm, log)
    header = (
        f"# Search strategies in simulation: {len(lands)} landscapes, budgets "
        f"{', '.join(map(str, budgets))}, {seeds} seeds\n\n"
        f"Run on {_machine()}. The times are the landscapes' own measurements on real GPUs; "
        "nothing is timed here, and each search has its own seed and a fresh objective."
    )
    if warm:
        pairs = ", ".join(f"{src.name} for {t}" for t, src in warm.items())
        header += (
            f" Warm: the best configs of {pairs} (2 at 20 evaluations, 5 from 40: as many as a "
            "sweep's warm start takes) are evaluated first, then the one-tunable ring of the "
            "best, inside the budget."
        )
    header += "\n"
    csv_path, md_path = search_bench.write(cells, out, header)
    print(f"{len(cells)} cells -> {csv_path}, {md_path}")
    return 0


def _machine() -> str:
    """The CPU this ran on (the study's wall time depends on it, its numbers do not)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def add_parser(sub, fmt) -> None:
    """The ``search-bench`` subcommand."""
    s = sub.add_parser(
        "search-bench",
        formatter_class=fmt,
        help="measure search strategies in simulation on tuning landscapes",
        epilog="example: python -m suite search-bench --quick --out /tmp/sb\n"
        "         python -m suite search-bench benchmarks/landscapes/pnpoly_RTX3090.json "
        "--strategies annealing tpe --budgets 48 --seeds 5 --out /tmp/sb5",
    )
    s.add_argument(
        "landscapes",
        nargs="*",
        help="landscape files (NAME.json / NAME.csv.gz) or folders (default: "
        "benchmarks/landscapes)",
    )
    s.add_argument(
        "--strategies", nargs="+", choices=sorted(STRATEGIES), default=list(BENCH_STRATEGIES)
    )
    s.add_argument("--budgets", nargs="+", type=ca.positive_int, help="default 20 48 100")
    s.add_argument("--seeds", type=ca.positive_int, help="independent searches per cell (30)")
    s.add_argument("--quick", action="store_true", help="budget 20, 3 seeds (a smoke test)")
    s.add_argument(
        "--warm",
        action="store_true",
        help="also run each GEMM landscape warm-started from another GPU's best configs",
    )
    s.add_argument("--out", default="runs/search-bench")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_search_bench)


__all__ = ["add_parser", "cmd_search_bench", "tune_landscape"]
