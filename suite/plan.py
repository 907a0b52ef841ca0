"""A sweep planned up front against a time budget (``suite bench --time-budget / --plan``).

Every task of the sweep gets an estimate from :mod:`suite.costmodel` (cached configs cost
nothing). With a budget the tasks are ordered by :func:`rank` (the headline shapes at 2:4, fwd
and bwd-data with greedy, first) and taken in that order while their estimates fit; the others
are skipped with a reason. While running, a task is skipped too when it no longer fits the wall
clock (its estimate scaled by how much slower than planned the finished tasks ran).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache

from tqdm import tqdm

from suite.backends import BACKENDS
from suite.cache import ResultCache
from suite.compressors import compressors_for
from suite.costmodel import Calibration, CostModel
from suite.problem import GemmProblem
from suite.shapes import HERE as SHAPES_DIR
from suite.space import Config
from suite.strategies import Objective, run_strategy
from suite.sweep import SweepSpec, _backend, mask_key, sweep_work
from suite.tuner import cache_base_key, unsupported_reason
from suite.warm import warm_for

HEADLINE_PATTERN = "2:4"
HEADLINE_PASSES = {("fwd", "-"), ("bwd-data", "greedy")}
# rank -> what it holds; lower ranks run first under a budget
RANKS = {
    0: "headline shapes, 2:4, fwd + bwd-data greedy",
    1: "other shapes, 2:4, fwd + bwd-data greedy",
    2: "headline shapes, other patterns and passes",
    3: "other shapes, other patterns and passes",
}


@cache
def headline_shapes() -> frozenset[tuple[int, int, int]]:
    """(out, in, tokens) of the layers in suite/shapes/headline.toml."""
    import tomllib

    data = tomllib.loads((SHAPES_DIR / "headline.toml").read_text())
    return frozenset((e["out"], e["in"], t) for e in data["layer"] for t in e["tokens"])


def rank(kind: str, task: tuple) -> int:
    """0 for the headline shapes x 2:4 x (fwd, bwd-data greedy), up to 3 for the rest."""
    if kind == "gemm":
        p: GemmProblem = task[0]
        shape = (p.m, p.k, p.n) if p.pass_ == "fwd" else (p.k, p.m, p.n)
        head = shape in headline_shapes() and p.pass_ != "bwd-weight"
        core = p.pattern == HEADLINE_PATTERN and (p.pass_, p.perm) in HEADLINE_PASSES
    else:
        layer, pattern, perm = task
        head = any(s[:2] == (layer.out, layer.inp) for s in headline_shapes())
        core = pattern == HEADLINE_PATTERN and perm == "greedy"
    return (0 if core else 2) + (0 if head else 1)


@dataclass
class PlannedTask:
    kind: str  # "gemm" or "mask"
    task: tuple
    rank: int
    estimate_s: float = 0.0
    configs: int = 0  # configs still to measure (gemm); 0 when cached or unsupported
    cached: bool = False
    unsupported: bool = False  # the backend cannot run the problem: one row, nothing measured
    group: int = 0  # tasks of one problem (its backends) are taken or skipped together
    skip_reason: str = ""

    def record(self) -> dict:
        """One row of skipped.csv."""
        if self.kind == "gemm":
            p, backend = self.task
            what = {"layer": p.layer, "pass": p.pass_, "pattern": p.pattern, "perm": p.perm}
            what |= {"m": p.m, "n": p.n, "k": p.k, "dtype": p.dtype, "backend": backend}
        else:
            layer, pattern, perm = self.task
            what = {"layer": layer.name, "pass": "mask", "pattern": pattern, "perm": perm}
            what |= {"m": layer.out, "n": 0, "k": layer.inp, "dtype": "", "backend": "bimask"}
        return {"task": self.kind, **what, "status": "skipped", "estimate_s": self.estimate_s}


@dataclass
class Plan:
    spec: SweepSpec  # with the space the plan chose
    tasks: list[PlannedTask]  # in run order
    budget_s: float | None
    model: CostModel
    notes: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    _spent: list[tuple[float, float]] = field(default_factory=list)  # (estimate, actual)

    def __post_init__(self) -> None:
        self.planned_s = self.estimate_s  # before any wall-clock skip

    @property
    def taken(self) -> list[PlannedTask]:
        return [t for t in self.tasks if not t.skip_reason]

    @property
    def skipped(self) -> list[PlannedTask]:
        return [t for t in self.tasks if t.skip_reason]

    @property
    def estimate_s(self) -> float:
        return sum(t.estimate_s for t in self.taken)

    def slowdown(self) -> float:
        """Actual over estimated time of the finished tasks (never below 1)."""
        est, act = sum(e for e, _ in self._spent), sum(a for _, a in self._spent)
        return max(1.0, act / est) if est > 0 else 1.0

    def progress_bar(self, disable: bool = False) -> tqdm:
        """A bar over estimated seconds: tqdm's remaining time is the ETA from measured rates."""
        return tqdm(
            total=self.estimate_s,
            desc="sweep",
            disable=disable,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} est. s "
            "[{elapsed}<{remaining}]{postfix}",
        )

    def run(self, bar: tqdm) -> Iterator[tuple[str, tuple]]:
        """Yield the tasks to run; skip those that no longer fit the budget's wall clock."""
        start, group = self.clock(), None
        for t in self.tasks:
            if t.skip_reason:
                continue
            if t.group != group and self.budget_s is not None:  # a new problem: does it fit?
                group = t.group
                rest = [u for u in self.tasks if u.group == group and not u.skip_reason]
                est = sum(u.estimate_s for u in rest)
                need, left = est * self.slowdown(), self.budget_s - (self.clock() - start)
                if est > 0 and need > left:
                    why = f"time budget: estimated {need:.0f} s, {max(left, 0):.0f} s left"
                    for u in rest:
                        if not u.cached:  # cached rows cost nothing: they still come
                            u.skip_reason = why + " (wall clock)"
                    bar.total = max(bar.total - est, bar.n)
                    bar.refresh()
                    continue
            if t.skip_reason:
                continue
            t0 = self.clock()
            yield t.kind, t.task
            self._spent.append((t.estimate_s, self.clock() - t0))
            bar.update(min(t.estimate_s, max(bar.total - bar.n, 0.0)))  # sums of floats
        bar.close()

    def meta(self) -> dict:
        return {
            "time_budget_s": self.budget_s,
            "plan_estimate_s": round(self.planned_s, 1),
            "space": self.spec.space,
            "skipped_tasks": len(self.skipped),
        }


def _space_size(backend, problem: GemmProblem, memo: dict) -> int:
    """len(space), memoised over spaces with equal tunables and the same restriction objects
    (the memo keeps each space alive, so an id is never reused by another restriction)."""
    space = backend.space(problem)
    key = (backend.name, repr(sorted(space.tunables.items())), tuple(map(id, space.restrictions)))
    if key not in memo:
        memo[key] = (space, len(space))
    return memo[key][1]


def _missing_configs(problem, backend, spec, cache, model, index, memo, pool) -> int:
    """Configs ``tune`` would measure: all it evaluates unless the cache has them (the replay
    starts from the warm list the sweep will give it: ``pool`` holds the cached rows of the
    problems before it)."""
    size = _space_size(backend, problem, memo)
    max_evals = spec.settings.max_evals
    evals = size if max_evals is None else min(max_evals, size)
    if cache is None or (_row_id(problem.key()), backend.name) not in index:
        return evals
    version = memo.setdefault(("version", backend.name), backend.version())
    source = memo.setdefault(("source", backend.name), backend.kernel_source())
    base = cache_base_key(problem, backend, version)
    missing, guess, found = 0, model.kernel_s(problem, backend.name) * 1e3, []

    def cost(config: Config) -> float:  # replay the strategy: cached configs cost nothing
        nonlocal missing
        row = cache.get({**base, "config": config.to_dict()})
        if row is None:
            missing += 1
            return guess
        found.append({"kernel_source": source, **row})
        return row["median_ms"] if row.get("status") == "ok" else math.inf

    warm = warm_for(pool, problem, backend, spec.settings, spec.warm_start)
    objective = Objective(cost, max_evals)
    run_strategy(
        spec.settings.strategy,
        backend.space(problem),
        objective,
        spec.settings.seed,
        [w.config for w in warm],
    )
    pool.add(found)
    return missing


def _row_id(key: dict) -> tuple:
    return tuple(str(key.get(k)) for k in ("op", "pass", "m", "n", "k", "dtype", "pattern", "perm"))


def _mask_measurements(spec: SweepSpec, perm: str) -> int:
    if perm != spec.perms[0]:
        return 1  # the permutation search only
    compress = sum(
        3 if c.fused is not None else 2 for c in compressors_for(spec.backends, spec.device)
    )
    return 3 + compress


def _estimate(spec: SweepSpec, cache: ResultCache | None, shard, budget_s, clock) -> Plan:
    rows = list(cache.rows.values()) if cache is not None else []
    calibration = Calibration.from_rows(rows)
    model = CostModel(spec.device, spec.settings.budget_s, spec.settings.min_reps, calibration)
    index = {(_row_id(r), r.get("backend")) for r in rows}
    memo: dict = {}
    tasks = [PlannedTask(kind, task, rank(kind, task)) for kind, task in sweep_work(spec, shard)]
    if budget_s is not None:
        tasks.sort(key=lambda t: t.rank)  # stable: a problem's backends stay together
    set_up: set = set()  # (problem, operand) whose inputs and reference are paid for
    pool = spec.warm_pool()  # as the sweep's: the rows of the problems before each one
    groups: dict = {}
    for t in tasks:
        t.group = groups.setdefault(t.task[0] if t.kind == "gemm" else t.task, len(groups))
        if t.kind == "mask":
            t.cached = cache is not None and cache.get(mask_key(*t.task, spec)) is not None
            t.estimate_s = (
                0.0 if t.cached else model.mask_task_s(_mask_measurements(spec, t.task[2]))
            )
        else:
            problem, name = t.task
            backend = _backend(name, spec)
            t.unsupported = unsupported_reason(problem, backend) is not None
            if not t.unsupported:
                t.configs = _missing_configs(
                    problem, backend, spec, cache, model, index, memo, pool
                )
            t.cached = not t.unsupported and t.configs == 0
            setup = (problem, backend.dense_operand)
            t.estimate_s = t.configs * model.config_s(problem, name)
            if t.configs:
                t.estimate_s += model.compress_s(problem, name)
            if t.configs and setup not in set_up:
                t.estimate_s += model.problem_setup_s(problem)
                set_up.add(setup)
    _fit(tasks, budget_s)
    notes = [
        f"cost model: suite/costmodel.py, calibrated from {len(rows)} cached rows "
        f"({', '.join(sorted(calibration.flops_per_s)) or 'none'}); assumed constants otherwise"
    ]
    return Plan(spec, tasks, budget_s, model, notes, clock)


def _fit(tasks: list[PlannedTask], budget_s: float | None) -> None:
    """Take whole problems in order while their estimates fit; mark the others skipped."""
    left = math.inf if budget_s is None else budget_s
    by_group: dict[int, list[PlannedTask]] = {}
    for t in tasks:
        by_group.setdefault(t.group, []).append(t)
    for group in by_group.values():
        est = sum(t.estimate_s for t in group)
        if est > left:
            for t in group:
                if not t.cached:  # cached rows cost nothing and are measured data: keep them
                    t.skip_reason = f"time budget: estimated {est:.0f} s, {left:.0f} s left"
            continue
        left -= est


def make_plan(
    spec: SweepSpec,
    cache: ResultCache | None,
    shard: tuple[int, int] = (0, 1),
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Plan:
    """Estimate every task of this shard and fit them to ``budget_s`` (None: take all).

    ``spec.space == "auto"``: the full spaces, unless they would skip tasks that the backends'
    quick spaces fit; then the quick ones."""
    if spec.space != "auto" or not any(BACKENDS[b].quick_space for b in spec.backends):
        return _estimate(
            replace(spec, space=spec.space.replace("auto", "full")), cache, shard, budget_s, clock
        )
    full = _estimate(replace(spec, space="full"), cache, shard, budget_s, clock)
    if not full.skipped:
        return full
    quick = _estimate(replace(spec, space="quick"), cache, shard, budget_s, clock)
    chosen = quick if len(quick.skipped) < len(full.skipped) else full
    chosen.notes.append(
        f"space: {chosen.spec.space} (the full spaces would skip {len(full.skipped)} tasks, "
        f"the quick ones {len(quick.skipped)})"
    )
    return chosen
