"""The measured step's derived columns (speed-up over the run's fastest dense step, the step
view's projection from a GEMM sweep) and its Markdown table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from suite.ratios import DAGGER, NOT_CONVERGED_NOTE, SPREAD_NOTE, format_ratio
from suite.report_tables import md
from suite.step_bench import PARTS
from suite.step_view import step_view
from suite.timing import spread_bounds

NO_SWEEP = "no sweep given"


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """speedup = dense_ms / step_ms, dense_ms the fastest ok dense step of the same block in
    this run (``dense_ref`` names its backend); the interval sets both timings at the edges of
    their noise (median -+ IQR/2) against each other."""
    df = df.reset_index(drop=True)
    for col in ("dense_ref", "dense_ms", "speedup", "speedup_lo", "speedup_hi"):
        df[col] = pd.Series(np.nan, index=df.index, dtype=object if col == "dense_ref" else float)
    if df.empty or "step_ms" not in df:
        return df
    lo, hi = spread_bounds(df.step_ms, df.iqr_ms, df.min_ms)
    ok = df.status == "ok"
    for block, rows in df[ok].groupby("block"):
        dense = rows[rows.method == "dense"]
        if dense.empty:
            continue
        ref = dense.step_ms.idxmin()
        sel = (df.block == block) & ok
        d_lo, d_hi = lo[df.index.get_loc(ref)], hi[df.index.get_loc(ref)]
        idx = np.flatnonzero(sel.to_numpy())
        df.loc[sel, "dense_ref"] = f"dense on {df.at[ref, 'backend']}"
        df.loc[sel, "dense_ms"] = df.at[ref, "step_ms"]
        df.loc[sel, "speedup"] = df.at[ref, "step_ms"] / df.loc[sel, "step_ms"]
        df.loc[sel, "speedup_lo"] = d_lo / hi[idx]
        df.loc[sel, "speedup_hi"] = d_hi / lo[idx]
    return df


def _sweep_layers(sweep: pd.DataFrame) -> dict[tuple[int, int], list[str]]:
    """(out, in) -> the sweep's layer names with forward GEMMs of that weight."""
    fwd = sweep[(sweep["pass"] == "fwd") & sweep.op.isin(["nm_gemm", "gemm"])]
    out: dict[tuple[int, int], list[str]] = {}
    for (m, k), g in fwd.groupby(["m", "k"]):
        out[(int(m), int(k))] = sorted(g.layer.unique())
    return out


def add_projection(df: pd.DataFrame, sweep: pd.DataFrame | None, perm_every: int) -> pd.DataFrame:
    """``projected_ms``: the step view's fc1 + fc2 step for the block's widths, tokens, pattern
    and method (its fastest GEMM of each pass, masks and compression: no GELU, no update, no
    launch overheads); ``projected_speedup`` its dense / method; ``projection_error`` measured /
    projected - 1; ``projection_note`` says why a row has none."""
    df = df.copy()
    for col in ("projected_ms", "projected_speedup", "projection_error"):
        df[col] = np.nan
    df["projection_note"] = NO_SWEEP if sweep is None else ""
    if sweep is None or df.empty:
        return df
    view = step_view(sweep, perm_every)
    layers = _sweep_layers(sweep)

    def one(out: int, inp: int, tokens: int, pattern: str, method: str) -> float:
        names = layers.get((out, inp), [])
        v = view[view.layer.isin(names) & (view.tokens == tokens) & (view.method == method)]
        v = v if pattern == "-" else v[v.pattern == pattern]
        return float(v.step_ms.iloc[0]) if len(v) else math.nan

    methods = set(view.method) if len(view) else set()
    for i, r in df.iterrows():
        if r.method not in methods:
            df.at[i, "projection_note"] = f"the step view has no {r.method}"
            continue
        shapes = ((r.d_hidden, r.d_model), (r.d_model, r.d_hidden))
        ms = sum(one(o, k, r.tokens, r.pattern, r.method) for o, k in shapes)
        pattern = r.pattern if r.pattern != "-" else "2:4"
        dense = sum(one(o, k, r.tokens, pattern, "dense") for o, k in shapes)
        if math.isnan(ms):
            df.at[i, "projection_note"] = (
                f"the sweep has no {r.d_model}x{r.d_hidden} GEMMs at {r.tokens} tokens"
                + ("" if r.pattern == "-" else f", {r.pattern}")
            )
            continue
        df.at[i, "projected_ms"] = ms
        df.at[i, "projected_speedup"] = dense / ms if ms else math.nan
        if r.status == "ok":
            df.at[i, "projection_error"] = r.step_ms / ms - 1
    return df


def _ms(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def display(df: pd.DataFrame) -> pd.DataFrame:
    """The table a reader sees: one line per row, failures with their status and reason."""
    lines = []
    for _, r in df.iterrows():
        line = {
            "block": r.block,
            "method": r.method,
            "pattern": r.pattern,
            "perm": r.realisation,
            "backend": r.backend,
        }
        if r.status != "ok":
            line["step ms"] = f"{r.status}: {r.reason}"
            lines.append(line)
            continue
        mark = "" if bool(r.converged) else f" {DAGGER}"
        line["step ms"] = f"{r.step_ms:.3g} (IQR {r.iqr_ms:.2g}){mark}"
        for p in PARTS:
            line[p] = _ms(r[f"{p}_ms"])
        line["speed-up"] = format_ratio(r.speedup, r.speedup_lo, r.speedup_hi, bool(r.converged))
        line["projected ms"] = _ms(r.projected_ms) if r.projection_note == "" else "-"
        err = r.projection_error
        line["measured/projected"] = "-" if pd.isna(err) else f"{err + 1:.2f}x"
        lines.append(line)
    return pd.DataFrame(lines).fillna("-")


def header_lines(meta: dict) -> list[str]:
    """What the run was: device, commit, shapes and their scaling, what the numbers mean."""
    lines = [
        "# Measured training step: MLP block (SparseLinear -> GELU -> SparseLinear)",
        "",
        f"- device: {meta['device_name']} ({meta['device']}, {meta['dtype']})",
        f"- commit `{meta.get('git_commit', '?')}`"
        + (" (dirty tree)" if meta.get("git_dirty") else ""),  # fmt: skip
        f"- shapes: {meta['scaling']}",
        f"- a step: forward + backward (the block's input gradient too) + w -= lr * grad; "
        f"timing budget {meta['budget_s']:g} s per row, target relative standard error "
        f"{meta['target_rse']:g}",
        f"- permutation: {meta['permutation']}, searched every {meta['perm_every']} steps "
        "(its cost measured on a refresh step and divided by perm_every)",
        f"- speed-up: over the fastest dense step of the same block in this run "
        f"({meta['speedup_ref']})",
        f"- projection: {meta['projection']}",
    ]
    if meta["device"] == "cpu":
        lines += [
            "",
            "**On this CPU the torch backend is masked dense math**: a sparse method runs the "
            "same dense GEMMs as the dense step plus its masks, so it cannot be faster here. "
            "These numbers check the benchmark and price the mask work, nothing more; the "
            "sparse speed-up needs a GPU backend (kernels, cusparselt).",
        ]
    return lines


def markdown(df: pd.DataFrame, meta: dict) -> str:
    lines = header_lines(meta) + [""]
    for block, rows in df.groupby("block", sort=False):
        first = rows.iloc[0]
        lines += [f"## {block}: {first.d_model} -> {first.d_hidden} -> {first.d_model} at "
                  f"{first.tokens:,} tokens", ""]  # fmt: skip
        lines += [md(display(rows).drop(columns=["block"])), ""]
        notes = sorted({n for n in rows.projection_note if n} if "projection_note" in rows
                       else set())  # fmt: skip
        if notes:
            lines += [f"Projection: {'; '.join(notes)}.", ""]
    lines += [
        "Parts (ms per step): masks, compress, gather, gemm_fwd, gemm_dx, gemm_dw, update are "
        "per-step medians of bimask.profile's sections; extra is any other section a backend "
        "records; permutation and mask_refresh are a refresh step's extra work / perm_every; "
        "other = the measured step - the per-step parts (GELU, autograd, launches). The parts "
        "add up to the step.",
        "",
        SPREAD_NOTE,
        "",
    ]
    if DAGGER in "\n".join(lines):
        lines += [NOT_CONVERGED_NOTE, ""]
    return "\n".join(lines)
