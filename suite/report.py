"""The Markdown report of a run: a headline, best configs, failures, mask quality, step view,
plots; every ratio with its noise interval (suite/ratios.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bimask.outputs import atomic_write_text
from suite import report_plots
from suite.budget import skipped_section
from suite.ratios import SPREAD_NOTE, converged, ratio_interval
from suite.report_headline import SHAPE, best_vs_best, headline, headline_display
from suite.report_search import search_section
from suite.report_tables import (
    best_display,
    md,
    own_display,
    per_shape_display,
    step_display,
    table_lines,
)
from suite.shards import partial_note
from suite.step_view import step_view
from suite.sweep import best_rows


def _match(ok: pd.DataFrame, ref: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """For every row of ``ok``, the ``ref`` row on the same ``keys`` (fastest one if several),
    aligned with ``ok``'s index; columns median_ms, iqr_ms, min_ms, converged (NaN: none)."""
    cols = [c for c in ("median_ms", "iqr_ms", "min_ms", "converged") if c in ref]
    ref = ref.sort_values("median_ms").drop_duplicates(keys)[keys + cols]
    return ok[keys].merge(ref, on=keys, how="left").set_index(ok.index)


def _add_ratio(ok: pd.DataFrame, ref: pd.DataFrame, name: str, keys: list[str]) -> None:
    """``ok[name]`` = ref time / row time with ``name_lo``/``name_hi``; ``name_ok`` is False
    where either timing did not converge. The reference row itself gets exactly 1."""
    itself = ok.index.isin(ref.sort_values("median_ms").drop_duplicates(keys).index)
    ref = _match(ok, ref, keys)
    ratio, lo, hi = ratio_interval(ref, ok)
    lo[itself] = hi[itself] = ratio[itself] = 1.0  # the reference row against itself
    ok[name], ok[f"{name}_lo"], ok[f"{name}_hi"] = ratio, lo, hi
    ok[f"{name}_ok"] = converged(ok) & (converged(ref) | ref.median_ms.isna()) | itself


def best_table(df: pd.DataFrame) -> pd.DataFrame:
    """The best config of every (problem, backend), with its speed-ups over the dense baseline
    and cuSPARSELt and their noise intervals (suite/ratios.py)."""
    best = best_rows(df)
    if best.empty:
        return best
    ok = best[best.status == "ok"].copy()
    shape = [c for c in SHAPE if c in ok]
    if "baseline" in ok and ok.baseline.astype(bool).any():
        _add_ratio(ok, ok[ok.baseline.astype(bool)], "speedup_vs_dense", shape)
    elif "speedup_vs_dense" in ok:  # no baseline rows to take a spread from
        ok["speedup_vs_dense_lo"] = ok["speedup_vs_dense_hi"] = float("nan")
    if (ok.backend == "cusparselt").any():
        _add_ratio(ok, ok[ok.backend == "cusparselt"], "vs_cusparselt", shape)
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
        "warm_start",
        "warm_from",
        "median_ms",
        "iqr_ms",
        "min_ms",
        "reps",
        "converged",
        "tflops",
        *_ratio_cols("speedup_vs_dense"),
        *_ratio_cols("vs_cusparselt"),
        "rel_error",
        "sparse_path",
        "operand",
        "ties",
    ]
    return ok[[c for c in cols if c in ok]].sort_values(
        ["layer", "n", "pass", "pattern", "perm", "median_ms"]
    )


def _ratio_cols(name: str) -> list[str]:
    return [name, f"{name}_lo", f"{name}_hi", f"{name}_ok"]


# our sparse kernel and its dense twin of the same structure, per kernel family
OWN_PAIRS = {
    "sm80": ("bimask_sparse", "bimask_dense"),
    "sm90": ("bimask_sparse_sm90", "bimask_dense_sm90"),
}


def own_ratio_table(best: pd.DataFrame) -> pd.DataFrame:
    """Per problem and kernel family: our dense kernel's time over our sparse kernel's (the
    like-for-like sparse speed-up; the kernels issue half the MMA work on the sparse path),
    with its noise interval."""
    if best.empty:
        return best
    keys = ["layer", "pass", "pattern", "perm", "m", "n", "k"]
    twin = ["layer", "pass", "m", "n", "k"]  # one dense row per perm: they share a time
    parts = []
    for family, (sp, de) in OWN_PAIRS.items():
        s = best[best.backend == sp].copy()
        d = best[best.backend == de]
        if s.empty or d.empty:
            continue
        ref = _match(s, d, twin)
        s["family"] = family
        s["sparse_ms"], s["dense_ms"] = s.median_ms, ref.median_ms
        s["sparse_speedup"], s["sparse_speedup_lo"], s["sparse_speedup_hi"] = ratio_interval(ref, s)
        s["sparse_speedup_ok"] = converged(s) & (converged(ref) | ref.median_ms.isna())
        parts.append(s[[*keys, "family", "sparse_ms", "dense_ms", *_ratio_cols("sparse_speedup")]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


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
            *table_lines(own_display(own)),
        ]
        if len(own)
        else []
    )
    per_shape = best_vs_best(best_rows(df))
    plots = [
        p.name
        for fig, name in (
            (report_plots.speedup_figure(per_shape), "speedup.png"),
            (report_plots.step_figure(step), "step.png"),
        )
        if (p := report_plots.save(fig, out / name))
    ]
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
        *skipped_section(out),
        *search_section(meta, best),
        "## Headline: best sparse against best dense",
        "",
        "Per pass and pattern, over shapes (a layer at one token count; for bwd-data each "
        "permutation strategy counts as a shape): the fastest sparse-path backend against the "
        "fastest dense implementation timed on the unmasked weight, as the geometric mean of the "
        "per-shape ratios (best dense time / best sparse time; >1: sparse faster). Its interval "
        "is the geometric mean of the per-shape noise bounds; the spread over shapes is the "
        "geometric standard deviation (GSD) and the range. The shapes are counted by whether "
        "sparse is faster, within noise or slower; the last column counts the shapes each "
        "backend (any backend, sparse or dense) was fastest on, and how many of those wins "
        "are clear of the runner-up's noise.",
        "",
        *table_lines(headline_display(headline(per_shape))),
        SPREAD_NOTE,
        "",
        "## Best sparse against best dense, per shape",
        "",
        *table_lines(per_shape_display(per_shape)),
        "## Best config per shape, pass, pattern and backend",
        "",
        "Speed-ups are over the dense baseline backend on the same device, timed on the "
        "unmasked weight (the dense layer a sparse one replaces; `operand` says what each row "
        "ran), with their noise intervals; TFLOP/s count the dense-equivalent 2mnk. "
        "`sparse_path` False marks a dense implementation.",
        "",
        *table_lines(best_display(best)),
        *own_section,
        "## Projected training step per layer",
        "",
        f"Permutation search amortised over perm_every={perm_every} steps. The step time's "
        "interval sums its parts' noise intervals; the speed-up's holds the parts a method "
        "shares with the dense step at their median. `bimask` is the paper's method: its "
        "bwd-data GEMM gathers dY into pi order (in the kernel or as a separate op). "
        "`bimask-physical` (where a backend timed it) takes dY already in pi order, as when W's "
        "rows and the next layer's input columns are reordered every perm_every steps: that "
        "reorder (and the optimizer state's) is not measured here and priced at zero, and it "
        "changes the next layer's masks, so it is a different method whose accuracy "
        "`python -m bimask.compare --methods bimask bimask-physical` measures.",
        "",
        *table_lines(step_display(step)),
        "## Per-step compression",
        "",
        "Masks change every step, so each sparse backend's operand is rebuilt every step: "
        "`compress` packs W*Mf (m x k), `compress_bwd` packs (W*Mb)^T in pi order (k x m), "
        "`mask_compress` takes top-N and packs in one pass from W. The step view above adds the "
        "rows of the backend it runs.",
        "",
        md(compression),
        "",
        "## Backward-mask quality by permutation strategy",
        "",
        "kept_pct: forward-kept weights that survive into the backward mask; grad_gap: relative "
        "error of dX = dY(W*Mb) against dY(W*Mf).",
        "",
        md(quality),
        "",
        "## Failed configs (recorded, not fatal)",
        "",
        md(fail_summary),
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
