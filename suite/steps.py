"""Time-boxed steps: each a subprocess under its own limit, all under one total budget.

A step that hangs is killed (its whole process group) when its limit or the budget runs out,
and the run goes on with the next; a step that fails is recorded with its last output. Each
step's log is written as it runs and ``steps.csv`` is rewritten after every step, so whatever
ends the run (a kill, a lost machine), the finished steps are on disk. The caller packs the
folder into one archive at the end (:func:`pack`).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESERVE_S = 10.0  # kept back from the budget for the summary and the archive
MIN_STEP_S = 5.0  # a step that would get less than this is skipped instead of started
KILL_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this long
TAIL_CHARS = 1500


@dataclass(frozen=True)
class Step:
    """One step: the command it runs (or why it is skipped), its limit and its estimate."""

    name: str
    title: str
    argv: list[str] | None
    limit_s: float
    estimate_s: float
    skip: str | None = None  # set: the step is recorded as skipped with this reason
    env: dict = field(default_factory=dict)
    after: Callable[[Path], None] | None = None  # runs on success, e.g. to extract a table
    needs: tuple = ()  # the kernel builds it launches (for a dry run's cache check)


@dataclass
class StepResult:
    name: str
    title: str
    status: str  # ok, failed, timed out, skipped
    seconds: float
    returncode: int | None
    limit_s: float
    detail: str = ""  # the reason of a skip, or the tail of a failed step's output

    COLUMNS = ("name", "title", "status", "seconds", "returncode", "limit_s", "detail")


def _kill(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-TAIL_CHARS:].strip()


def run_step(step: Step, limit_s: float, log: Path, cwd: Path | None = None) -> StepResult:
    """Run one step's command with its output in ``log``, killed after ``limit_s`` seconds."""
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            step.argv,
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **step.env},
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
        try:
            rc = proc.wait(timeout=limit_s)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc, status = None, "timed out"
    seconds = time.perf_counter() - t0
    detail = "" if status == "ok" else _tail(log)
    if status == "ok" and step.after is not None:
        try:
            step.after(log.parent)
        except Exception as err:  # a table that cannot be read is a failed step, not a crash
            status, detail = "failed", f"after the run: {type(err).__name__}: {err}"
    return StepResult(step.name, step.title, status, seconds, rc, limit_s, detail)


def write_rows(path: Path, results: list[StepResult]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, StepResult.COLUMNS)
    writer.writeheader()
    for r in results:
        writer.writerow({k: v for k, v in asdict(r).items() if k in StepResult.COLUMNS})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)


def run_steps(steps: list[Step], out: Path, budget_s: float, cwd: Path | None = None):
    """Run ``steps`` in order within ``budget_s``; returns their results (also in steps.csv)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    deadline = time.monotonic() + budget_s - RESERVE_S
    results: list[StepResult] = []
    for step in steps:
        left = deadline - time.monotonic()
        if step.skip or step.argv is None:
            results.append(
                StepResult(step.name, step.title, "skipped", 0.0, None, step.limit_s, step.skip)
            )
        elif left < MIN_STEP_S:
            why = f"the budget is spent ({max(left, 0):.0f} s left)"
            results.append(StepResult(step.name, step.title, "skipped", 0.0, None, 0.0, why))
        else:
            log = out / "logs" / f"{len(results) + 1:02d}-{step.name}.log"
            results.append(run_step(step, min(step.limit_s, left), log, cwd))
        write_rows(out / "steps.csv", results)
    return results


def pack(out: Path, name: str) -> Path:
    """Everything under ``out`` in one gzipped tar (written beside, then moved in)."""
    archive = out / name
    tmp = out.parent / f".{name}.{os.getpid()}.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path != archive:
                tar.add(path, arcname=f"{out.name}/{path.relative_to(out)}")
    tmp.replace(archive)
    return archive
