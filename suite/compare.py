"""Regression compare of two runs: noise-aware, exit status 1 on a real slowdown.

A row moved when |change| > threshold AND the change exceeds the recorded spread of the
difference: |new - base| > noise_k * sqrt(iqr_base^2 + iqr_new^2). A config that ran in the base
run and fails in the new one is a regression too.

Gates: ``any`` fails when any row is slower or broken; ``geomean`` fails when the geometric mean
of new/base over all rows exceeds 1 + threshold AND exceeds 1 by more than noise_k standard
errors of the mean log ratio, or anything broke.

Defaults depend on the device (:data:`DEFAULTS`). On GPUs: every config, gate ``any``, 5%. On
shared CPUs whose speed drifts between runs (seen here: best-per-problem ratios from 0.6x to 2x
between two runs of the same code) a per-row gate flags noise, so CPU runs default to what
``make bench-ci`` uses: each problem's best config, gate ``geomean``, 30%. Options given on the
command line override a default; the chosen settings are printed.

Only runs of one device are compared (two devices' timings are not a regression check), unless
asked for; a comparison with no common rows is an error, not "no regression".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from suite.store import KEYS, join

PROBLEM_KEYS = [k for k in KEYS if k != "config"]
MAX_THRESHOLD = 10.0  # 1000%: beyond it a typo (5 for 5%) is likelier than intent
MAX_NOISE_K = 10.0


class CompareError(ValueError):
    """Two runs (or settings) that cannot be compared as asked."""


@dataclass(frozen=True)
class Settings:
    best_only: bool
    gate: str
    threshold: float
    noise_k: float = 1.0


DEFAULTS = {
    "cpu": Settings(best_only=True, gate="geomean", threshold=0.30),
    "gpu": Settings(best_only=False, gate="any", threshold=0.05),
}


def check_limits(threshold: float | None, noise_k: float | None) -> None:
    """Refuse thresholds outside (0, 10] and noise multipliers outside [0, 10]."""
    if threshold is not None and not (0 < threshold <= MAX_THRESHOLD):
        raise CompareError(
            f"--threshold {threshold:g} is out of range; give a fraction in (0, "
            f"{MAX_THRESHOLD:g}], e.g. 0.05 for 5%"
        )
    if noise_k is not None and not (0 <= noise_k <= MAX_NOISE_K):
        raise CompareError(
            f"--noise-k {noise_k:g} is out of range; give a spread multiplier in [0, "
            f"{MAX_NOISE_K:g}] (1 is the default, 0 ignores the spread)"
        )


@dataclass(frozen=True)
class RunInfo:
    """What a run holds, as far as deciding whether it compares with another."""

    path: str
    device: str | None  # the device's name, from the run's sidecar
    kinds: tuple[str, ...]  # the rows' device column: cpu / cuda
    backends: tuple[str, ...]
    patterns: tuple[str, ...]
    shapes: tuple[str, ...]
    rows: int

    @property
    def is_cpu(self) -> bool:
        return "cpu" in self.kinds

    def where(self) -> str:
        return f"{self.device or 'an unrecorded device'} ({'/'.join(self.kinds) or '?'})"

    def describe(self) -> str:
        shapes = ", ".join(self.shapes[:3]) + (", ..." if len(self.shapes) > 3 else "")
        return (
            f"{self.path} holds {self.rows} rows on {self.where()}, backends "
            f"{list(self.backends)}, patterns {list(self.patterns)}, {len(self.shapes)} shapes "
            f"({shapes})"
        )


def run_info(df: pd.DataFrame, meta: dict, path: str) -> RunInfo:
    name = (meta.get("fingerprint") or {}).get("device") or (meta.get("device_before") or {}).get(
        "name"
    )
    kinds = sorted(set(df.device.dropna().astype(str)))
    if not kinds and (kind := (meta.get("device_before") or {}).get("kind")):
        kinds = [str(kind)]

    def values(col: str) -> tuple[str, ...]:
        return tuple(sorted(set(df[col].dropna().astype(str)))) if col in df else ()

    shapes = sorted({f"{m}x{n}x{k}" for m, n, k in df[["m", "n", "k"]].itertuples(index=False)})
    return RunInfo(
        path, name, tuple(kinds), values("backend"), values("pattern"), tuple(shapes), len(df)
    )


def check_same_device(runs: list[RunInfo], what: str = "--allow-cross-device") -> None:
    """Refuse runs measured on different devices (names where recorded, and device kinds)."""
    first = runs[0]
    for other in runs[1:]:
        names = first.device and other.device and first.device != other.device
        if names or first.kinds != other.kinds:
            raise CompareError(
                f"the runs were measured on different devices: {first.path} on {first.where()}, "
                f"{other.path} on {other.where()}; {what}"
            )


def choose(runs: list[RunInfo], **given) -> tuple[Settings, str]:
    """The settings: what was given, the rest from the device's defaults; and a line saying so."""
    profile = "cpu" if any(r.is_cpu for r in runs) else "gpu"
    default = DEFAULTS[profile]
    picked = {k: v if v is not None else getattr(default, k) for k, v in given.items()}
    settings = Settings(**{**default.__dict__, **picked})
    defaulted = [  # the defaults that differ between devices
        k.replace("_", "-")
        for k, v in given.items()
        if v is None and len({getattr(d, k) for d in DEFAULTS.values()}) > 1
    ]
    line = (
        f"settings: {'the best config of each problem' if settings.best_only else 'every config'}"
        f", gate {settings.gate}, threshold {settings.threshold:.0%}, noise-k "
        f"{settings.noise_k:g}"
    )
    if defaulted:
        line += f" ({profile.upper()} defaults for {', '.join(defaulted)}"
        if profile == "cpu":
            line += (
                ": whole CPU runs drift by tens of percent, so one row's change is no "
                "evidence; --gate any --no-best-only checks each config"
            )
        line += ")"
    return settings, line


def best_only(df: pd.DataFrame) -> pd.DataFrame:
    """One row per problem and backend: its fastest ok config (failed problems kept as failed)."""
    df = df.copy()
    df["_rank"] = df.median_ms.where(df.status == "ok", math.inf)
    best = df.sort_values("_rank").groupby(PROBLEM_KEYS, dropna=False, sort=False).head(1)
    return best.drop(columns="_rank").assign(config="best")


def coverage(base: pd.DataFrame, new: pd.DataFrame) -> dict[str, int]:
    """How many rows the two runs share, and how many only one of them holds."""
    counts = join(base, new)._merge.value_counts()
    return {k: int(counts.get(k, 0)) for k in ("both", "left_only", "right_only")}


def compare(
    base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.05, noise_k: float = 1.0
) -> pd.DataFrame:
    j = join(base, new)
    both = j[j._merge == "both"].copy()
    both["change"] = both.median_ms_new / both.median_ms_base - 1
    spread = noise_k * (both.iqr_ms_base.fillna(0) ** 2 + both.iqr_ms_new.fillna(0) ** 2) ** 0.5
    moved = (both.median_ms_new - both.median_ms_base).abs() > spread
    verdict = pd.Series("same", index=both.index)
    verdict[(both.change > threshold) & moved] = "slower"
    verdict[(both.change < -threshold) & moved] = "faster"
    verdict[(both.change.abs() > threshold) & ~moved] = "noise"
    broke = (both.status_base == "ok") & (both.status_new != "ok")
    verdict[broke] = "broken"
    verdict[(both.status_base != "ok") & (both.status_new == "ok")] = "fixed"
    verdict[(both.status_base != "ok") & (both.status_new != "ok")] = "failing"
    verdict[(both.status_base == "unsupported") & (both.status_new == "unsupported")] = (
        "unsupported"
    )
    both["verdict"] = verdict
    return both


def _log_ratios(table: pd.DataFrame) -> pd.Series:
    ok = table[(table.status_base == "ok") & (table.status_new == "ok")]
    ratios = (ok.median_ms_new / ok.median_ms_base).dropna()
    return ratios[ratios > 0].map(math.log)


def timed_in_both(table: pd.DataFrame) -> int:
    """Rows with a timing in both runs (what the geometric mean is taken over)."""
    return len(_log_ratios(table))


def geomean_ratio(table: pd.DataFrame) -> float:
    logs = _log_ratios(table)
    return math.exp(logs.mean()) if len(logs) else 1.0


def geomean_stderr(table: pd.DataFrame) -> float:
    """Standard error of the mean log ratio (0 for fewer than two rows)."""
    logs = _log_ratios(table)
    return float(logs.std() / math.sqrt(len(logs))) if len(logs) > 1 else 0.0


def regressed(
    table: pd.DataFrame, gate: str = "any", threshold: float = 0.05, noise_k: float = 1.0
) -> bool:
    if table.verdict.eq("broken").any():
        return True
    if gate == "geomean":
        log_gm = math.log(geomean_ratio(table))  # beyond the threshold and beyond the noise
        return log_gm > math.log1p(threshold) and log_gm > noise_k * geomean_stderr(table)
    return bool(table.verdict.eq("slower").any())


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    moved = table[table.verdict.isin(["slower", "faster", "broken", "fixed"])]
    cols = [
        "layer",
        "backend",
        "pass",
        "pattern",
        "perm",
        "m",
        "n",
        "k",
        "config",
        "median_ms_base",
        "median_ms_new",
        "change",
        "verdict",
    ]
    out = moved[[c for c in cols if c in moved]].copy()
    out["change"] = (out.change * 100).round(1).astype(str) + "%"
    return out.sort_values("verdict")
