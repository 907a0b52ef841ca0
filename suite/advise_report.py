"""The advisor's Markdown and its Pareto plot (speed-up vs accuracy gap, error bars both ways)."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from tabulate import tabulate


def _interval(v: float, lo: float, hi: float, fmt: str) -> str:
    if math.isnan(v):
        return "-"
    return f"{v:{fmt}} ({lo:{fmt}} to {hi:{fmt}})"


def write_markdown(table: pd.DataFrame, info: dict) -> str:
    shown = pd.DataFrame({
        "variant": table.variant,
        "pattern": table.pattern,
        "top1 %": table.top1.map("{:.2f}".format),
        "gap to dense (95% CI), points": [
            _interval(g, lo, hi, "+.2f") for g, lo, hi in zip(
                table.gap, table.gap_lo, table.gap_hi, strict=True)],
        "seeds": table.seeds,
        "step speed-up (interval)": [
            _interval(s, lo, hi, ".3f") for s, lo, hi in zip(
                table.speedup, table.speedup_lo, table.speedup_hi, strict=True)],
        "pareto": table.pareto.map({True: "yes", False: ""}),
    })  # fmt: skip
    missing = sorted(set(table.speed_source) - {"reference", info["source"]})
    proxy = (" The sweep does not time the model's own layers: these bench layers stand in for "
             "them." if info["source"].startswith("projected") else "")  # fmt: skip
    return "\n".join([
        f"# Which N:M method? {info['model']} on {info['device']}",
        "",
        f"Accuracy: `{info['accuracy']}` (model `{info['model']}`, {info['dataset']}, "
        f"{info['epochs']} epochs). Speed: `{info['bench']}` on {info['device']}.",
        "",
        f"Speed-up: {info['source']}.{proxy}" + "".join(f" Also: {m}." for m in missing),
        "",
        "## Answer",
        "",
        *[f"- {line}" for line in info["answers"]],
        "",
        "## Accuracy and speed per method x pattern",
        "",
        tabulate(shown, headers="keys", tablefmt="github", showindex=False),
        "",
        "gap: top-1 minus dense, paired over seeds, with its 95% t interval (bimask/claims.py). "
        "speed-up: dense step time / method step time on the bench device; above 1 is faster. "
        "Every variant of a method shares that method's step timings. pareto: no other row is "
        "both at least as fast and at least as accurate (point estimates).",
        "",
        "![speed-up vs accuracy gap](pareto.png)",
        "",
    ])  # fmt: skip


def pareto_figure(table: pd.DataFrame, info: dict) -> Figure:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    timed = table.dropna(subset=["speedup"])
    for _, r in timed.iterrows():
        label = r.variant if r.variant == "dense" else f"{r.variant} {r.pattern}"
        gap_lo, gap_hi = (r.gap_lo, r.gap_hi) if math.isfinite(r.gap_lo) else (r.gap, r.gap)
        ax.errorbar(
            r.gap, r.speedup,
            xerr=[[r.gap - gap_lo], [gap_hi - r.gap]],
            yerr=[[r.speedup - r.speedup_lo], [r.speedup_hi - r.speedup]],
            fmt="s" if r.pareto else "o", capsize=3, label=label,
        )  # fmt: skip
    front = timed[timed.pareto].sort_values("gap")
    ax.plot(front.gap, front.speedup, "k--", lw=0.8, label="Pareto front")
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.axvline(0.0, color="grey", lw=0.6)
    ax.set(xlabel="top-1 gap to dense (points, 95% CI)",
           ylabel="training-step speed-up over dense (x)",
           title=f"{info['model']}: accuracy vs speed on {info['device']}")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
