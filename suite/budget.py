"""``suite bench``'s time budget: its flags, the printed plan, the record of what was skipped."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

from suite.backends import BACKENDS, available_backends
from suite.backends.base import Backend
from suite.cache import ResultCache
from suite.plan import RANKS, Plan, make_plan
from suite.sweep import SweepSpec

# The default sweep budget per tier (None: unbounded). The GPU tier's whole `make bench` targets
# 20 minutes on one H100: 18 for the sweep, the rest for the report and pytest-benchmark.
DEFAULT_TIME_BUDGET_S = {"gpu": 1080.0}
SKIPPED_CSV = "skipped.csv"


def bench_budget(args, tier: str) -> float | None:
    """The sweep's time budget in seconds from --time-budget / --full / the tier's default.

    Raises ValueError (exit 2) for a budget that is not a positive number of seconds, and for
    --full together with --time-budget or --quick."""
    text = getattr(args, "time_budget", None)
    full = getattr(args, "full", False)
    if full and text is not None:
        raise ValueError("--full runs the whole sweep without a budget; drop --time-budget")
    if full and args.quick:
        raise ValueError("--full and --quick contradict each other; pass one of them")
    if text is None:
        return None if full else DEFAULT_TIME_BUDGET_S.get(tier)
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(
            f"--time-budget must be a positive number of seconds, got {text!r}; e.g. "
            "--time-budget 1200 (or --full for no budget)"
        )
    return seconds


def default_space(space: str | None, budget_s: float | None) -> str:
    """--space as given; else "auto" (quick where the full spaces do not fit) under a budget."""
    return space or ("auto" if budget_s is not None else "full")


def candidate_backends(device: str, planning: bool) -> list[Backend]:
    """The backends that run here; for a plan of a GPU tier on a machine without CUDA, every
    registered GPU backend (planning needs no GPU)."""
    if planning and device == "cuda" and not torch.cuda.is_available():
        return [b for b in BACKENDS.values() if b.device == device]
    return available_backends(device)


def planning_cache(path: Path, fingerprint: dict | None) -> tuple[ResultCache | None, str]:
    """The cache read-only (nothing is created or repaired), or None when absent or foreign."""
    if not path.exists() or path.is_dir() or not path.stat().st_size:
        return None, f"no cache at {path}: every task is measured"
    cache = ResultCache(path, None, replay=True)
    recorded = getattr(cache, "header", {}).get("fingerprint")
    if fingerprint is None:
        return cache, f"cache {path} ({len(cache)} rows; its device is not checked: no CUDA here)"
    if recorded != fingerprint:
        return None, f"cache {path} was recorded on another device: ignored"
    return cache, f"cache {path}: {len(cache)} rows"


def print_plan(
    spec: SweepSpec, cache_path: Path, device: str, shard: tuple[int, int], budget_s
) -> str:
    """``suite bench --plan``: the plan as text, from the cache read-only; runs nothing."""
    from suite.device import fingerprint

    try:
        fp = fingerprint(device)
    except Exception:  # no CUDA here: plan a GPU tier anyway
        fp = None
    cache, note = planning_cache(cache_path, fp)
    plan = make_plan(spec, cache, shard, budget_s)
    plan.notes.insert(0, note)
    return render(plan)


def _seconds(s: float) -> str:
    if s >= 3600:
        return f"{s:,.0f} s ({s / 3600:.1f} h)"
    return f"{s:,.0f} s ({s / 60:.1f} min)"


def render(plan: Plan, limit: int = 15) -> str:
    """The plan as text: tasks and estimated seconds per group, total, what would be skipped."""
    spec = plan.spec
    budget = "none" if plan.budget_s is None else _seconds(plan.budget_s)
    lines = [
        f"plan: {len(plan.tasks)} tasks on {spec.device} ({len(spec.backends)} backends: "
        f"{' '.join(spec.backends)}); space {spec.space}; strategy {spec.settings.strategy}, "
        f"max {spec.settings.max_evals or 'all'} configs, {spec.settings.budget_s} s a config; "
        f"budget {budget}",
        "",
        f"{'group':<48} {'kind':<5} {'tasks':>6} {'cached':>6} {'unsup':>6} {'run':>6} "
        f"{'est. s':>10} {'skipped':>7} {'skipped s':>10}",
    ]
    for r, about in RANKS.items():
        for kind in ("gemm", "mask"):
            group = [t for t in plan.tasks if t.rank == r and t.kind == kind]
            if not group:
                continue
            run = [t for t in group if not t.skip_reason]
            skip = [t for t in group if t.skip_reason]
            lines.append(
                f"{about:<48} {kind:<5} {len(group):>6} {sum(t.cached for t in group):>6} "
                f"{sum(t.unsupported for t in group):>6} {len(run):>6} "
                f"{sum(t.estimate_s for t in run):>10,.0f} {len(skip):>7} "
                f"{sum(t.estimate_s for t in skip):>10,.0f}"
            )
    skipped = plan.skipped
    lines += [
        "",
        f"estimated total: {_seconds(plan.estimate_s)} for {len(plan.taken)} tasks; "
        f"{len(skipped)} skipped (estimated {_seconds(sum(t.estimate_s for t in skipped))})",
        *plan.notes,
    ]
    groups: dict[int, list] = {}
    for t in skipped:
        groups.setdefault(t.group, []).append(t)
    if groups:
        lines.append(f"would skip {len(groups)} problems (the first {min(limit, len(groups))}):")
        for group in list(groups.values())[:limit]:
            lines.append(f"  {_label(group)}: {group[0].skip_reason}")
    return "\n".join(lines)


def _label(group: list) -> str:
    """A skipped problem: its layer, pass, pattern, size and backends."""
    rec = group[0].record()
    perm = f" {rec['perm']}" if rec["perm"] not in ("-", "") else ""
    size = f"{rec['m']}x{rec['n']}x{rec['k']}" if rec["task"] == "gemm" else "masks"
    backends = f"{len(group)} backends" if len(group) > 1 else rec["backend"]
    return f"{rec['layer']} {rec['pass']}{perm} {rec['pattern']} {size} ({backends})"


def skipped_frame(plan: Plan) -> pd.DataFrame:
    recs = [{**t.record(), "reason": t.skip_reason} for t in plan.skipped]
    return pd.DataFrame(recs)


def write_skipped(plan: Plan, out_dir: Path) -> Path | None:
    """OUT/skipped.csv (one row per skipped task, with its reason), written atomically; an old
    one is removed when nothing was skipped (it described an earlier run)."""
    path = Path(out_dir) / SKIPPED_CSV
    if not plan.skipped:
        path.unlink(missing_ok=True)
        return None
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".skipped.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            skipped_frame(plan).to_csv(f, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def skipped_line(plan: Plan) -> str | None:
    """The line printed after a budgeted sweep (None when nothing was skipped)."""
    if not plan.skipped:
        return None
    return (
        f"time budget {plan.budget_s:.0f} s: skipped {len(plan.skipped)} of {len(plan.tasks)} "
        f"tasks (estimated {_seconds(sum(t.estimate_s for t in plan.skipped))}); see "
        f"{SKIPPED_CSV}, or run them with --full or a larger --time-budget (the cache resumes)"
    )


def skipped_section(run_dir: Path | str) -> list[str]:
    """Markdown lines for report.md: what a time budget skipped (empty when nothing was)."""
    run_dir = Path(run_dir)
    files = [run_dir / SKIPPED_CSV, *sorted(run_dir.glob(f"shard-*/{SKIPPED_CSV}"))]
    frames = [pd.read_csv(f) for f in files if f.is_file()]
    if not frames:
        return []
    df = pd.concat(frames, ignore_index=True)
    counts = df.groupby(["task", "pass", "pattern"]).size().rename("tasks").reset_index()
    return [
        "## Skipped by the time budget",
        "",
        f"{len(df)} tasks were not run (listed with their reasons in {SKIPPED_CSV}); "
        "run them with `--full` or a larger `--time-budget` (the cache keeps what ran).",
        "",
        counts.to_markdown(index=False),
        "",
    ]
