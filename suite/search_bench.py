"""The search benchmark: every strategy x budget x seed on a set of landscapes, in simulation.

Each search is independent (a fresh objective, its own seed) and is scored by the best time it
found over the landscape's optimum, taken from the landscape's own rows. Per (landscape,
strategy, budget) the table gives the median of that ratio over the seeds, its interquartile
range and the share of seeds within 5% of the optimum, plus the geometric mean of the medians
over the landscapes. A warm start evaluates the best configs of a related landscape first
(``--warm``: the same kernel on another GPU; as many as a sweep's warm start takes,
:func:`suite.warm.warm_count`), then the one-tunable ring of the best, inside the same budget.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from suite.landscapes import Landscape
from suite.simulate import simulate_landscape
from suite.tuner import TuneSettings
from suite.warm import warm_count

SIZES = {  # --quick for tests, the default for the benchmark run
    "quick": {"budgets": (20,), "seeds": 3},
    "default": {"budgets": (20, 48, 100), "seeds": 30},
}
WITHIN = 1.05


@dataclass(frozen=True)
class Cell:
    """One (landscape, strategy, budget, warm start) over its seeds."""

    landscape: str
    strategy: str
    budget: int
    warm: str  # "" or the landscape the warm start came from
    ratios: tuple[float, ...]

    def quantile(self, q: float) -> float:
        xs = sorted(self.ratios)
        pos = q * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        if xs[hi] == math.inf:
            return math.inf if pos > lo or xs[lo] == math.inf else xs[lo]
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    @property
    def within(self) -> float:
        """Share of seeds whose best is within 5% of the optimum."""
        return sum(r <= WITHIN for r in self.ratios) / len(self.ratios)


def warm_configs(source: Landscape, count: int) -> list:
    """The ``count`` fastest configs of a related landscape (to evaluate first)."""
    return source.ranked()[:count]


def run_cell(
    landscape: Landscape, strategy: str, budget: int, seeds: int, warm: Landscape | None = None
) -> Cell:
    """``seeds`` independent searches of ``budget`` evaluations each."""
    start = warm_configs(warm, warm_count(budget)) if warm is not None else []
    ratios = []
    for seed in range(seeds):
        objective = simulate_landscape(landscape, TuneSettings(strategy, budget, None, seed), start)
        assert len(objective.seen) <= budget, "a strategy spent more than its budget"
        ratios.append(objective.best()[1] / landscape.best_ms)
    return Cell(landscape.name, strategy, budget, warm.name if warm else "", tuple(ratios))


def run_bench(
    landscapes: list[Landscape],
    strategies: list[str],
    budgets: tuple[int, ...],
    seeds: int,
    warm_from: dict[str, Landscape] | None = None,
    log=None,
) -> list[Cell]:
    """Every strategy x budget (x the warm start, where one is given) on every landscape."""
    cells = []
    for land in landscapes:
        for strategy in strategies:
            for budget in budgets:
                t0 = time.perf_counter()
                cells.append(run_cell(land, strategy, budget, seeds))
                if warm_from and land.name in warm_from:
                    cells.append(run_cell(land, strategy, budget, seeds, warm_from[land.name]))
                if log:
                    log(f"{land.name} {strategy} {budget}: {time.perf_counter() - t0:.1f} s")
    return cells


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def to_csv(cells: list[Cell]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "landscape",
            "strategy",
            "budget",
            "warm_from",
            "seeds",
            "median",
            "q1",
            "q3",
            "within_5pct",
        ]
    )
    for c in cells:
        w.writerow(
            [
                c.landscape,
                c.strategy,
                c.budget,
                c.warm,
                len(c.ratios),
                f"{c.median:.4f}",
                f"{c.quantile(0.25):.4f}",
                f"{c.quantile(0.75):.4f}",
                f"{c.within:.3f}",
            ]
        )
    return out.getvalue()


def _label(strategy: str, warm: str) -> str:
    return f"{strategy} (warm from {warm})" if warm else strategy


def to_markdown(cells: list[Cell], header: str = "") -> str:
    """One table per budget: a row per landscape, a column per strategy, and a geomean row."""
    lines = [header] if header else []
    lines += [
        "Each cell: median best-found / optimum over the seeds, [interquartile range], "
        "(% of seeds within 5%).",
        "",
    ]
    for budget in sorted({c.budget for c in cells}):
        at = [c for c in cells if c.budget == budget]
        columns = list(dict.fromkeys((c.strategy, bool(c.warm)) for c in at))
        names = list(dict.fromkeys(c.landscape for c in at))
        lines += [f"### {budget} evaluations", ""]
        heads = [f"{s}{' (warm)' if w else ''}" for s, w in columns]
        lines += ["| landscape | " + " | ".join(heads) + " |", "|---" * (len(columns) + 1) + "|"]
        for name in names:
            row = []
            for s, w in columns:
                c = next(
                    (c for c in at if (c.landscape, c.strategy, bool(c.warm)) == (name, s, w)), None
                )
                row.append(
                    ""
                    if c is None
                    else f"{c.median:.3f} [{c.quantile(0.25):.2f}-"
                    f"{c.quantile(0.75):.2f}] ({100 * c.within:.0f}%)"
                )
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        geo = []
        for s, w in columns:
            col = [c for c in at if (c.strategy, bool(c.warm)) == (s, w)]
            ok = all(math.isfinite(c.median) for c in col)
            share = statistics.fmean(c.within for c in col)
            over = "" if len(col) == len(names) else f" over {len(col)}"
            text = f"{geomean([c.median for c in col]):.3f} ({100 * share:.0f}%){over}"
            geo.append(text if ok else "inf")
        lines += [f"| geomean ({len(names)}) | " + " | ".join(geo) + " |", ""]
    return "\n".join(lines) + "\n"


def runs_csv(cells: list[Cell]) -> str:
    """Every search's ratio (one row per seed), for anyone who wants other statistics."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["landscape", "strategy", "budget", "warm_from", "seed", "ratio"])
    for c in cells:
        for seed, r in enumerate(c.ratios):
            w.writerow([c.landscape, c.strategy, c.budget, c.warm, seed, f"{r:.6f}"])
    return out.getvalue()


def write(cells: list[Cell], out: Path, header: str = "") -> tuple[Path, Path]:
    """search_bench.csv (per cell), search_bench_runs.csv (per seed) and search_bench.md."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "search_bench.csv", out / "search_bench.md"
    csv_path.write_text(to_csv(cells))
    (out / "search_bench_runs.csv").write_text(runs_csv(cells))
    md_path.write_text(to_markdown(cells, header))
    return csv_path, md_path
