"""The report's search section: the strategy the sweep ran, its expected distance from exhaustive
search (from the committed search-bench study: a simulation on public GPU tuning landscapes, not
a measurement of this run's kernels) and how many winners came from a warm start."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "results" / "search-bench" / "search_bench_runs.csv"
WITHIN = 1.05


def expected_distance(strategy: str, budget: int, warm: bool, study: Path = STUDY) -> str | None:
    """ "median X, Y% within 5%" over every (landscape, seed) of the study at this strategy and
    budget (warm: the warm-started GEMM searches; cold otherwise); None when not measured."""
    try:
        with open(study, newline="") as f:
            runs = [
                float(r["ratio"])
                for r in csv.DictReader(f)
                if r["strategy"] == strategy
                and r["budget"] == str(budget)
                and bool(r["warm_from"]) == warm
            ]
    except (OSError, KeyError, ValueError):
        return None
    if not runs:
        return None
    lands = "the 3 GEMM landscapes warm-started from another GPU" if warm else "5 landscapes"
    within = 100 * sum(r <= WITHIN for r in runs) / len(runs)
    return (
        f"median best-found / optimum {statistics.median(runs):.3f}, {within:.0f}% of searches "
        f"within 5% ({len(runs)} searches on {lands})"
    )


def warm_winners(best: pd.DataFrame) -> tuple[int, int]:
    """(winners from a warm start, winners) among the per-(problem, backend) best rows."""
    if best.empty or "warm_start" not in best:
        return 0, len(best)
    return int(best.warm_start.fillna(False).astype(bool).sum()), len(best)


def search_section(meta: dict, best: pd.DataFrame, study: Path = STUDY) -> list[str]:
    """The report lines (empty for a run whose metadata names no strategy)."""
    strategy, budget = meta.get("strategy"), meta.get("max_evals")
    if not strategy:
        return []
    lines = ["## Search", ""]
    if budget is None or (isinstance(budget, float) and math.isnan(budget)):
        lines += [
            f"- strategy `{strategy}` without an evaluation budget (exhaustive where it "
            "enumerates the space: each winner is its space's best)",
            "",
        ]
        return lines
    budget = int(budget)
    warm = bool(meta.get("warm_start"))
    source = "this run's related problems" + (
        f" and {meta['warm_from']}" if meta.get("warm_from") else ""
    )
    lines.append(
        f"- strategy `{strategy}`, up to {budget} evaluations per (problem, backend); warm "
        + (f"starts on (from {source})" if warm else "starts off")
    )
    cold = expected_distance(strategy, budget, False, study)
    hot = expected_distance(strategy, budget, True, study)
    if cold is None:
        lines.append(
            f"- expected distance from exhaustive search: not measured for `{strategy}` at "
            f"{budget} evaluations (run `python -m suite search-bench`)"
        )
    else:
        lines.append(
            "- expected distance from exhaustive search, in simulation on public GPU tuning "
            "landscapes (results/search-bench; not measured on this run's kernels): cold, "
            + cold
            + (f"; warm, {hot}" if hot and warm else "")
        )
    n_warm, n = warm_winners(best)
    lines += [f"- winners from a warm start (marked (w) below): {n_warm} of {n}", ""]
    return lines
