"""python -m bimask.compare: train methods x patterns x seeds on one model and report.

Examples:
  python -m bimask.compare --quick                 # CPU-sized profile (< 20 min on 2 cores)
  python -m bimask.compare --model cnn --epochs 30 --seeds 3 --out results/accuracy
  python -m bimask.compare --quick --model mlp --methods bimask bimask-physical --patterns 2:4

Method bimask-physical is bimask with perm_realisation="physical": every perm_every steps a
Linear's rows and its consumer's input columns (Linear -> elementwise -> Linear) are reordered
by pi, so the backward needs no gather; the consumer's forward N:M groups, and so its masks,
change, which makes it a different method: this study measures what it costs. It needs such
pairs (models mlp and vit; not cnn).

Writes OUT/<run>.csv (one row per training run), OUT/<run>_curves.csv, OUT/<run>.md (the
report) and OUT/<run>.png; --report-only rebuilds <run>.md and <run>.png beside the CSV (or in
--out). An existing output file is never replaced without --force.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bimask import cli_args as ca
from bimask.methods import METHODS as ALL_METHODS
from bimask.models import MODELS
from bimask.outputs import (
    atomic_path,
    atomic_write_text,
    check_input_file,
    check_output_dir,
    check_output_file,
)
from bimask.permutations import PERMUTATIONS
from bimask.train.config import DATASETS, TrainConfig
from bimask.train.loop import build_sparse_model, train

PATTERNS = ["2:4", "1:4", "2:8", "4:8", "1:16"]
METHODS = ["srste", "tmask", "bimask"]
# method rows that are a training method with other options (not in the default set)
VARIANTS = {"bimask-physical": dict(method="bimask", perm_realisation="physical")}
PROFILES = {  # quick: sized for a 2-core CPU; full: for GPU hosts
    "quick": dict(epochs=2, train_subset=3000, test_subset=2000, batch_size=128),
    "full": dict(epochs=30, train_subset=None, test_subset=None, batch_size=128),
}
COLUMNS = [
    "model",
    "dataset",
    "method",
    "pattern",
    "permutation",
    "seed",
    "epochs",
    "final_test_top1",
    "best_test_top1",
    "mask_overhead_frac",
    "bwd_kept_frac",
    "grad_gap",
    "train_time_s",
    "device",
]


def run_grid(args, out: Path) -> pd.DataFrame:
    profile = PROFILES["quick" if args.quick else "full"] | {
        k: v for k, v in (("epochs", args.epochs),) if v is not None
    }
    if args.dataset == "synthetic":  # the toy set is smaller than the quick profile's subsets
        profile |= {"train_subset": None, "test_subset": None}
    jobs = [("dense", "-")] + [(m, p) for p in args.patterns for m in args.methods]
    grid = [  # every config is built (and so validated) before the first run starts
        (
            seed,
            method,
            pattern,
            TrainConfig(
                model=args.model,
                dataset=args.dataset,
                data_dir=args.data_dir,
                **VARIANTS.get(method, {"method": method}),
                pattern="2:4" if pattern == "-" else pattern,
                permutation=args.permutation,
                seed=seed,
                device=args.device,
                out=str(out / "runs" / f"{method}-{pattern.replace(':', 'x')}-s{seed}"),
                **profile,
            ),
        )
        for seed in range(args.seeds)
        for method, pattern in jobs
    ]
    checked = set()
    for _, method, pattern, cfg in grid:  # e.g. physical on a model without Linear ->
        if method in VARIANTS and (method, pattern) not in checked:  # elementwise -> Linear
            checked.add((method, pattern))
            try:
                build_sparse_model(cfg)
            except ValueError as err:
                raise ValueError(f"--methods {method} at {pattern}: {err}") from None
    rows, curves = [], []
    for seed, method, pattern, cfg in grid:
        t0 = time.perf_counter()
        s = train(cfg)
        s["pattern"], s["method"] = pattern, method
        rows.append({k: s.get(k) for k in COLUMNS})
        curves += [{"method": method, "pattern": pattern, "seed": seed, **h} for h in s["history"]]
        print(
            f"[{len(rows)}/{len(grid)}] {method} {pattern} seed {seed}: "
            f"top1 {s['final_test_top1']:.4f} ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(curves)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    dense = df[df.method == "dense"].final_test_top1.mean()
    g = df.groupby(["pattern", "method"], sort=False)
    table = g.agg(
        top1_mean=("final_test_top1", "mean"),
        top1_std=("final_test_top1", "std"),
        bwd_kept=("bwd_kept_frac", "mean"),
        overhead=("mask_overhead_frac", "mean"),
        seeds=("seed", "count"),
    ).reset_index()
    table["gap_to_dense"] = table.top1_mean - dense
    return table


def _spread(*stds: float) -> float:
    """Combined seed standard deviation of a difference of means (points)."""
    return 100 * math.sqrt(sum(0.0 if pd.isna(s) else s * s for s in stds))


def findings(table: pd.DataFrame) -> list[str]:
    """The paper's claims, checked against the data (reported either way), with the seed spread."""
    lines = []
    dense = table[table.method == "dense"]
    row = table[(table.method == "bimask") & (table.pattern == "2:4")]
    if len(row) and len(dense):
        gap = float(row.gap_to_dense.iloc[0]) * 100
        spread = _spread(row.top1_std.iloc[0], dense.top1_std.iloc[0])
        verdict = "holds" if gap >= -0.5 else "does NOT hold"
        lines.append(
            f"Bi-Mask 2:4 vs dense: {gap:+.2f} points (claim: within 0.5) - {verdict}; "
            f"seed spread of the difference {spread:.2f} points."
        )
    for pattern in table.pattern.unique():
        sub = table[table.pattern == pattern].set_index("method")
        if {"bimask", "tmask"} <= set(sub.index):
            diff = (sub.top1_mean["bimask"] - sub.top1_mean["tmask"]) * 100
            spread = _spread(sub.top1_std["bimask"], sub.top1_std["tmask"])
            verdict = "holds" if diff >= 0 else "does NOT hold"
            noise = " (within the seed spread: not significant)" if abs(diff) < spread else ""
            lines.append(
                f"Bi-Mask vs transposable at {pattern}: {diff:+.2f} points +/- "
                f"{spread:.2f} - {verdict}{noise}."
            )
        if {"bimask", "bimask-physical"} <= set(sub.index):  # not a claim: a measured cost
            diff = (sub.top1_mean["bimask-physical"] - sub.top1_mean["bimask"]) * 100
            spread = _spread(sub.top1_std["bimask-physical"], sub.top1_std["bimask"])
            noise = " (within the seed spread)" if abs(diff) < spread else ""
            lines.append(
                f"Bi-Mask with the permutation realised physically vs gathered at {pattern}: "
                f"{diff:+.2f} points +/- {spread:.2f}{noise} (the consumers' masks change)."
            )
    return lines


def plot(
    df: pd.DataFrame, table: pd.DataFrame, path: Path, curves: pd.DataFrame | None = None
) -> None:
    """Accuracy by pattern and method; training curves at 2:4 when the per-epoch log exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_curves = curves is not None and len(curves) > 0
    fig, axes = plt.subplots(1, 3 if with_curves else 1, figsize=(16 if with_curves else 7, 4))
    ax = axes[0] if with_curves else axes
    if with_curves:
        sel = curves[curves.pattern.isin(["2:4", "-"])]
        mean = sel.groupby(["method", "epoch"])[["train_loss", "test_top1"]].mean().reset_index()
        for method, g in mean.groupby("method"):
            axes[1].plot(g.epoch, g.train_loss, marker="o", label=method)
            axes[2].plot(g.epoch, g.test_top1 * 100, marker="o", label=method)
        axes[1].set(xlabel="epoch", ylabel="train loss", title="training curves at 2:4")
        axes[2].set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy at 2:4")
        axes[1].legend()
    dense = df[df.method == "dense"].final_test_top1.mean() * 100
    ax.axhline(dense, color="k", ls="--", label="dense")
    patterns = [p for p in table.pattern.unique() if p != "-"]
    for i, method in enumerate(m for m in table.method.unique() if m != "dense"):
        sub = table[table.method == method].set_index("pattern").reindex(patterns)
        xs = [j + (i - 1) * 0.25 for j in range(len(patterns))]
        ax.errorbar(
            xs,
            sub.top1_mean * 100,
            yerr=sub.top1_std.fillna(0) * 100,
            fmt="o",
            capsize=3,
            label=method,
        )
    ax.set_xticks(range(len(patterns)), patterns)
    ax.set_xlabel("N:M pattern")
    ax.set_ylabel("test top-1 (%)")
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


def report(df: pd.DataFrame, run: str, out: Path, command: str) -> str:
    table = summarize(df)
    shown = table.assign(
        top1=lambda t: [
            f"{m * 100:.2f} +/- {0 if pd.isna(s) else s * 100:.2f}"
            for m, s in zip(t.top1_mean, t.top1_std, strict=True)
        ],
        gap=lambda t: [f"{g * 100:+.2f}" for g in t.gap_to_dense],
        bwd_kept_pct=lambda t: [f"{k * 100:.1f}" if pd.notna(k) else "-" for k in t.bwd_kept],
        overhead_pct=lambda t: [f"{o * 100:.1f}" for o in t.overhead],
    )[["pattern", "method", "top1", "gap", "bwd_kept_pct", "overhead_pct", "seeds"]]
    md = [
        f"# Mask-method comparison: {run}",
        "",
        f"Model `{df.model.iloc[0]}` on `{df.dataset.iloc[0]}`, epochs {df.epochs.iloc[0]}, "
        f"device `{df.device.iloc[0]}`.",
        "",
        f"Command: `{command}`",
        "",
        tabulate(shown, headers="keys", tablefmt="github", showindex=False),
        "",
        "top1: mean +/- std over seeds (%); gap: points vs dense; bwd_kept_pct: backward-mask "
        "kept / forward kept; overhead_pct: mask + permutation time / training time.",
        "",
        "## Claims checked",
        "",
    ] + [f"- {line}" for line in findings(table)]
    md += ["", f"![accuracy by pattern]({run}.png)", ""]
    return "\n".join(md)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bimask.compare",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="the CPU-sized profile")
    p.add_argument("--model", default="cnn", choices=sorted(MODELS))
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    p.add_argument("--data-dir")
    sparse_methods = sorted(m for m in ALL_METHODS if m != "dense") + sorted(VARIANTS)
    p.add_argument(
        "--methods",
        nargs="+",
        default=METHODS,
        choices=sparse_methods,
        help="bimask-physical: bimask with perm_realisation=physical, a different method "
        "(see below); not in the default set",
    )
    p.add_argument("--patterns", nargs="+", default=PATTERNS, type=ca.pattern)
    p.add_argument("--permutation", default="greedy", choices=sorted(PERMUTATIONS))
    p.add_argument("--seeds", type=ca.positive_int, default=3)
    p.add_argument("--epochs", type=ca.positive_int)
    p.add_argument("--device", default="auto", type=ca.device)
    p.add_argument(
        "--out",
        help="output folder (default: results/accuracy; with --report-only, the CSV's folder)",
    )
    p.add_argument("--run", help="run name (default: <model>-<profile>-<date>)")
    p.add_argument("--work-dir", default="runs/compare", help="per-run checkpoints and logs")
    p.add_argument(
        "--report-only",
        metavar="CSV",
        type=ca.existing_file,
        help="rebuild the report from a results CSV",
    )
    p.add_argument("--force", action="store_true", help="replace output files that exist")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args, argv)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


# the columns report() needs of a results CSV, and plot() of a curves CSV
NEEDED = ["model", "dataset", "method", "pattern", "seed", "epochs", "final_test_top1",
          "bwd_kept_frac", "mask_overhead_frac", "device"]  # fmt: skip
CURVE_COLUMNS = ["method", "pattern", "seed", "epoch", "train_loss", "test_top1"]


def read_results(path: Path, needed: list[str], what: str) -> pd.DataFrame:
    """Read a CSV this command wrote; a clear ``ValueError`` when it is not one."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a {what} ({err})") from None
    if missing := [c for c in needed if c not in df]:
        raise ValueError(
            f"{path} is not a {what}: missing columns {missing}; give a CSV that "
            "python -m bimask.compare wrote"
        )
    if df.empty:
        raise ValueError(f"{path} is a {what} without rows; nothing to report")
    return df


def _run(args, argv) -> int:
    run = args.run or f"{args.model}-{'quick' if args.quick else 'full'}-{time.strftime('%Y%m%d')}"
    curves = None
    if args.report_only:
        src = check_input_file(args.report_only, "--report-only")
        run = args.run or src.stem
        out = Path(args.out) if args.out else src.parent
        names = [f"{run}.png", f"{run}.md"]  # the input CSVs are read, never rewritten
        df = read_results(src, NEEDED, "bimask.compare results file")
        curves_csv = src.with_name(f"{src.stem}_curves.csv")
        if curves_csv.is_file():
            curves = read_results(curves_csv, CURVE_COLUMNS, "bimask.compare curves file")
    else:
        out = Path(args.out or "results/accuracy")
        names = [f"{run}.csv", f"{run}_curves.csv", f"{run}.png", f"{run}.md"]
    if Path(run).name != run or run in ("", ".", ".."):
        raise ValueError(f"--run {run!r} must be a plain name, not a path")
    check_output_dir(out, "--out")
    for name in names:
        check_output_file(out / name, "output", make_parents=True)
    if not args.force and (existing := [n for n in names if (out / n).exists()]):
        raise ValueError(
            f"{', '.join(existing)} in {out} exist and would be overwritten; pass --force to "
            "replace them (or choose another --out / --run)"
        )
    if not args.report_only:
        check_output_dir(args.work_dir, "--work-dir")
        t0 = time.perf_counter()
        df, curves = run_grid(args, Path(args.work_dir) / run)
        print(f"grid wall time: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        with atomic_path(out / f"{run}.csv") as tmp:
            df.to_csv(tmp, index=False)
        with atomic_path(out / f"{run}_curves.csv") as tmp:
            curves.to_csv(tmp, index=False)
    plot(df, summarize(df), out / f"{run}.png", curves)
    text = report(df, run, out, "python -m bimask.compare " + " ".join(argv or sys.argv[1:]))
    atomic_write_text(out / f"{run}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
