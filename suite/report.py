"""The Markdown report of a run: best configs, failures, mask quality, step view, plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bimask.outputs import atomic_write_text
from suite.export import plot_speedups, plot_step
from suite.shards import partial_note
from suite.step_view import step_view
from suite.sweep import best_rows


def _md(df: pd.DataFrame, floatfmt=".3g") -> str:
    if df.empty:
        return "_none_"
    return tabulate(
        df, headers="keys", tablefmt="github", showindex=False, floatfmt=floatfmt, missingval="-"
    )


def best_table(df: pd.DataFrame) -> pd.DataFrame:
    best = best_rows(df)
    if best.empty:
        return best
    ok = best[best.status == "ok"].copy()
    cslt = ok[ok.backend == "cusparselt"].set_index(["layer", "pass", "pattern", "perm", "n"])
    if len(cslt):
        ok["vs_cusparselt"] = [
            cslt.median_ms.get((r.layer, r["pass"], r.pattern, r.perm, r.n), float("nan"))
            / r.median_ms
            for _, r in ok.iterrows()
        ]
    ties = df[df.get("tie_with_best", False).astype(bool)] if "tie_with_best" in df else df[:0]
    tie_count = ties.groupby(["layer", "pass", "pattern", "perm", "n", "backend"]).size()
    ok["ties"] = [
        int(tie_count.get((r.layer, r["pass"], r.pattern, r.perm, r.n, r.backend), 0))
        for _, r in ok.iterrows()
    ]
    cols = [
        "layer",
        "pass",
        "pattern",
        "perm",
        "m",
        "n",
        "k",
        "backend",
        "config",
        "median_ms",
        "tflops",
        "speedup_vs_dense",
        "vs_cusparselt",
        "rel_error",
        "sparse_path",
        "operand",
        "ties",
    ]
    return ok[[c for c in cols if c in ok]].sort_values(
        ["layer", "n", "pass", "pattern", "perm", "median_ms"]
    )


# our sparse kernel and its dense twin of the same structure, per kernel family
OWN_PAIRS = {
    "sm80": ("bimask_sparse", "bimask_dense"),
    "sm90": ("bimask_sparse_sm90", "bimask_dense_sm90"),
}


def own_ratio_table(best: pd.DataFrame) -> pd.DataFrame:
    """Per problem and kernel family: our dense kernel's time over our sparse kernel's (the
    like-for-like sparse speed-up; the kernels issue half the MMA work on the sparse path)."""
    if best.empty:
        return best
    rows = []
    keys = ["layer", "pass", "pattern", "perm", "m", "n", "k"]
    for family, (sp, de) in OWN_PAIRS.items():
        s = best[best.backend == sp].set_index(keys)
        d = best[best.backend == de]
        if s.empty or d.empty:
            continue
        d = d.set_index(["layer", "pass", "m", "n", "k"]).median_ms
        for key, r in s.iterrows():
            dense_ms = d.get((key[0], key[1], key[4], key[5], key[6]), float("nan"))
            if not isinstance(dense_ms, float):  # one dense row per perm: they share a time
                dense_ms = float(pd.Series(dense_ms).min())
            rows.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "family": family,
                    "sparse_ms": r.median_ms,
                    "dense_ms": dense_ms,
                    "sparse_speedup": dense_ms / r.median_ms,
                }
            )
    return pd.DataFrame(rows)


def write_report(df: pd.DataFrame, meta: dict, out_dir: str | Path, perm_every: int = 100) -> Path:
    out = Path(out_dir)
    best = best_table(df)
    failures = df[df.status != "ok"]
    fail_summary = (
        failures.groupby(["backend", "status"])
        .agg(rows=("status", "size"), example=("reason", "first"))
        .reset_index()
        if len(failures)
        else failures
    )
    quality = df[df.op == "perm_search"]
    quality = (
        quality.assign(kept_pct=quality.get("kept_frac", 0) * 100)[
            ["layer", "pattern", "perm", "kept_pct", "grad_gap", "median_ms"]
        ].rename(columns={"median_ms": "search_ms"})
        if len(quality)
        else quality
    )
    compression = df[df.op.isin(["compress", "compress_bwd", "mask_compress"])]
    compression = (
        compression[compression.status == "ok"][
            ["layer", "pattern", "op", "compress_backend", "m", "k", "median_ms"]
        ].sort_values(["layer", "pattern", "op", "median_ms"])
        if len(compression) and "compress_backend" in compression
        else compression[:0]
    )
    step = step_view(df, perm_every)
    own = own_ratio_table(best)
    own_section = (
        [
            "## Our sparse kernel over our dense kernel",
            "",
            "The same kernel structure with the sparse and the dense MMA, best config of each "
            "(the target at 8192^3 is at least 1.3x).",
            "",
            _md(own),
            "",
        ]
        if len(own)
        else []
    )
    plots = []
    if len(best) and (p := plot_speedups(best_rows(df), out / "speedup.png")):
        plots.append(p.name)
    if p := plot_step(step, out / "step.png"):
        plots.append(p.name)
    dev = meta.get("device_before", {})
    n_throttled = int(df["throttled"].fillna(False).astype(bool).sum()) if "throttled" in df else 0
    lines = [
        f"# Sparse GEMM sweep: {meta.get('tier', '?')} tier"
        + (" (PARTIAL)" if meta.get("partial") else ""),
        "",
        *([note, ""] if (note := partial_note(meta)) else []),
        f"- device: `{dev.get('name', '?')}` ({dev.get('kind', '?')}), driver "
        f"`{dev.get('driver', '?')}`; throttled rows: {n_throttled}",
        f"- commit `{meta.get('git_commit', '?')}`"
        + (" (with uncommitted changes)" if meta.get("git_dirty") else "")
        + f", {meta.get('timestamp', '?')}",
        f"- command: `{meta.get('command', '?')}`",
        f"- rows: {len(df)} ({int((df.status == 'ok').sum())} ok, {len(failures)} failed)",
        "",
        "## Best config per shape, pass, pattern and backend",
        "",
        "Speed-ups are over the dense baseline backend on the same device, timed on the "
        "unmasked weight (the dense layer a sparse one replaces; `operand` says what each row "
        "ran); TFLOP/s count the dense-equivalent 2mnk. `sparse_path` False marks a dense "
        "implementation.",
        "",
        _md(best),
        "",
        *own_section,
        "## Projected training step per layer",
        "",
        f"Permutation search amortised over perm_every={perm_every} steps.",
        "",
        _md(step),
        "",
        "## Per-step compression",
        "",
        "Masks change every step, so each sparse backend's operand is rebuilt every step: "
        "`compress` packs W*Mf (m x k), `compress_bwd` packs (W*Mb)^T in pi order (k x m), "
        "`mask_compress` takes top-N and packs in one pass from W. The step view above adds the "
        "rows of the backend it runs.",
        "",
        _md(compression),
        "",
        "## Backward-mask quality by permutation strategy",
        "",
        "kept_pct: forward-kept weights that survive into the backward mask; grad_gap: relative "
        "error of dX = dY(W*Mb) against dY(W*Mf).",
        "",
        _md(quality),
        "",
        "## Failed configs (recorded, not fatal)",
        "",
        _md(fail_summary),
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
