"""python -m bimask.compare: train methods x patterns x seeds on one model and report.

Examples:
  python -m bimask.compare --quick                 # CPU-sized profile (< 20 min on 2 cores)
  python -m bimask.compare --profile standard      # full Fashion-MNIST, < 2 h on 2 cores
  python -m bimask.compare --model cnn --epochs 30 --seeds 3 --out results/accuracy
  python -m bimask.compare --quick --model mlp --methods bimask bimask-physical --patterns 2:4

Method bimask-physical is bimask with perm_realisation="physical": every perm_every steps a
Linear's rows and its consumer's input columns (Linear -> elementwise -> Linear) are reordered
by pi, so the backward needs no gather; the consumer's forward N:M groups, and so its masks,
change, which makes it a different method: this study measures what it costs. It needs such
pairs (models mlp and vit; not cnn).

Profiles: quick (3,000 images, 2 epochs), standard (60k/10k images, cnn_small, 3 epochs, 7 seeds,
2:4, the variants dense, srste, tmask, bimask-random, bimask-greedy and bimask-physical where the
checkout has it; it writes into results/accuracy/<run>/), full (30 epochs; the GPU profile).
Every finished (variant, pattern, seed) cell is kept under --work-dir/<run>/cells/: re-running
a killed command skips the cells that are done. Claims are decided from paired differences over
seeds with 95% t intervals (bimask/claims.py).

Writes OUT/<run>.csv (one row per training run), OUT/<run>_curves.csv, OUT/<run>_meta.json (the
command, profile and notes), OUT/<run>.md (the report) and OUT/<run>.png; --report-only rebuilds
<run>.md and <run>.png beside the CSV (or in --out), with the command, notes and profile text
read from <run>_meta.json when the CSV has one. An existing output file is never replaced
without --force.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bimask import claims
from bimask import cli_args as ca
from bimask.machine import cpu_model
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
from bimask.study import (
    PROFILES,
    STANDARD_WHY,
    VARIANTS,
    check_physical,
    plan,
    run_cells,
    variants_to_run,
)
from bimask.train.config import DATASETS

PATTERNS = ["2:4", "1:4", "2:8", "4:8", "1:16"]
METHODS = ["srste", "tmask", "bimask"]


def run_grid(args, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or read back, when done before) every cell of the grid."""
    return run_cells(plan(args, work), work / "cells")


def _with_variant(df: pd.DataFrame) -> pd.DataFrame:
    """Results written before variants existed: the variant is the method."""
    return df if "variant" in df else df.assign(variant=df.method)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    df = _with_variant(df)
    dense = df[df.method == "dense"].final_test_top1.mean()
    g = df.groupby(["pattern", "variant"], sort=False)
    table = g.agg(
        top1_mean=("final_test_top1", "mean"),
        top1_std=("final_test_top1", "std"),
        bwd_kept=("bwd_kept_frac", "mean"),
        overhead=("mask_overhead_frac", "mean"),
        seeds=("seed", "count"),
    ).reset_index()
    table["gap_to_dense"] = table.top1_mean - dense
    return table.rename(columns={"variant": "method"})


def _ci(row) -> str:
    return f"{row['diff']:+.2f} (95% CI {row['lo']:+.2f} to {row['hi']:+.2f}, SE {row['se']:.2f})"


def findings(df: pd.DataFrame) -> list[str]:
    """The paper's claims decided with the seed spread (bimask/claims.py), one line each."""
    found = claims.check_claims(_with_variant(df))
    return [
        f"{r['claim']}: {r['a']} - {r['b']} = {_ci(r)} points over {r['n']} seeds "
        f"- **{r['verdict']}**."
        for _, r in found.iterrows()
    ]


def differences_section(df: pd.DataFrame) -> list[str]:
    """Every paired difference with its SE, and whether the power target is met."""
    diffs = claims.all_differences(_with_variant(df))
    if diffs.empty:
        return []
    shown = diffs.assign(
        diff=diffs["diff"].map("{:+.2f}".format),
        ci=[f"{lo:+.2f} to {hi:+.2f}" for lo, hi in zip(diffs.lo, diffs.hi, strict=True)],
        se=diffs.se.map("{:.3f}".format),
        meets_target=diffs.meets_target.map({True: "yes", False: "no"}),
    )[["pattern", "a", "b", "diff", "ci", "se", "n", "meets_target"]]
    met = int(diffs.meets_target.sum())
    return [
        "## Paired differences (points, a - b, over seeds)",
        "",
        tabulate(shown, headers="keys", tablefmt="github", showindex=False, disable_numparse=True),
        "",
        f"Power target: SE <= {claims.TARGET_SE} points for each difference; met by {met} of "
        f"{len(diffs)}" + (" (all)." if met == len(diffs) else "; the others need more seeds."),
        "",
    ]


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
    # one colour per method in every panel (dense black, as its reference line)
    names = [m for m in table.method.unique() if m != "dense"]
    if with_curves:
        by = "variant" if "variant" in curves else "method"
        names += [m for m in curves[by].unique() if m != "dense" and m not in names]
    palette = plt.get_cmap("tab10").colors
    colour = {"dense": "k", **{m: palette[i % len(palette)] for i, m in enumerate(names)}}
    if with_curves:
        sel = curves[curves.pattern.isin(["2:4", "-"])]
        mean = sel.groupby([by, "epoch"])[["train_loss", "test_top1"]].mean().reset_index()
        for method, g in mean.groupby(by):
            style = {"marker": "o", "label": method, "color": colour.get(method)}
            axes[1].plot(g.epoch, g.train_loss, **style)
            axes[2].plot(g.epoch, g.test_top1 * 100, **style)
        axes[1].set(xlabel="epoch", ylabel="train loss", title="training curves at 2:4")
        axes[2].set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy at 2:4")
        axes[1].legend()
    dense = df[df.method == "dense"].final_test_top1.mean() * 100
    ax.axhline(dense, color="k", ls="--", label="dense")
    patterns = [p for p in table.pattern.unique() if p != "-"]
    shown = [m for m in table.method.unique() if m != "dense"]
    for i, method in enumerate(shown):
        sub = table[table.method == method].set_index("pattern").reindex(patterns)
        xs = [j + (i - (len(shown) - 1) / 2) * 0.75 / len(shown) for j in range(len(patterns))]
        ax.errorbar(
            xs,
            sub.top1_mean * 100,
            yerr=sub.top1_std.fillna(0) * 100,
            fmt="o",
            capsize=3,
            label=method,
            color=colour[method],
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


def report(df: pd.DataFrame, run: str, out: Path, command: str, notes=(), why: str = "") -> str:
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
        *[f"Note: {n}." for n in notes],
        "",
        tabulate(shown, headers="keys", tablefmt="github", showindex=False),
        "",
        "top1: mean +/- std over seeds (%); gap: points vs dense; bwd_kept_pct: backward-mask "
        "kept / forward kept; overhead_pct: mask + permutation time / training time.",
        "",
        "## Claims checked",
        "",
    ] + [f"- {line}" for line in findings(df)]
    md += [
        "",
        "Verdict rules (bimask/claims.py): 'holds' when the 95% interval of the paired "
        "difference lies inside the claim's margin, 'does not hold' when it lies outside, "
        "'not resolvable at this power' when it straddles the margin.",
        "",
    ]
    md += differences_section(df)
    md += ["## Why this profile", "", "```", why, "```", ""] if why else []
    md += [f"![accuracy by pattern]({run}.png)", ""]
    return "\n".join(md)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bimask.compare",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="the quick profile (--profile quick)")
    p.add_argument("--profile", choices=sorted(PROFILES), help="quick, standard or full (default)")
    p.add_argument("--model", choices=sorted(MODELS), help="default: the profile's, else cnn")
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    p.add_argument("--data-dir")
    sparse = sorted({m for m in ALL_METHODS if m != "dense"} | set(VARIANTS))  # dense always runs
    p.add_argument("--methods", nargs="+", choices=sparse, help="methods or variants (study.py)")
    p.add_argument("--patterns", nargs="+", type=ca.pattern, help="default: the profile's")
    p.add_argument("--permutation", default="greedy", choices=sorted(PERMUTATIONS))
    p.add_argument("--seeds", type=ca.positive_int, help="default: the profile's (3; standard 7)")
    p.add_argument("--epochs", type=ca.positive_int)
    p.add_argument("--device", default="auto", type=ca.device)
    p.add_argument(
        "--out",
        help="output folder (default: results/accuracy, standard: results/accuracy/<run>; with "
        "--report-only, the CSV's folder)",
    )
    p.add_argument("--run", help="run name (default: <model>-<profile>-<date>; standard: "
                   "<model>-standard-<cpu>)")  # fmt: skip
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


def write_meta(path: Path, command: str, profile: str, notes: list[str]) -> None:
    """What a report needs beyond the CSVs, so that --report-only can rebuild it whole."""
    meta = {"command": command, "profile": profile, "notes": list(notes)}
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def read_meta(csv: Path) -> dict | None:
    """The <run>_meta.json beside a results CSV; None when there is none (an older run)."""
    path = csv.with_name(f"{csv.stem}_meta.json")
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not JSON ({err}); fix or delete it and rerun") from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("command"), str)
        and isinstance(meta.get("profile"), str)
        and isinstance(meta.get("notes"), list)
        and all(isinstance(n, str) for n in meta["notes"])
    )
    if not ok:
        raise ValueError(
            f"{path} is not a bimask.compare meta file (it needs 'command', 'profile' and a list "
            "of 'notes'); fix or delete it and rerun"
        )
    return meta


def machine_slug() -> str:
    """e.g. 'amd-epyc-2c': the CPU named in the standard profile's run name."""
    import os
    import re

    name = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-") or "cpu"
    return f"{name}-{os.cpu_count()}c"


def resolve(args) -> None:
    """Fill the options left out from the profile (--quick is --profile quick)."""
    if args.quick and args.profile not in (None, "quick"):
        raise ValueError(f"--quick and --profile {args.profile} contradict; give one of them")
    args.profile = "quick" if args.quick else args.profile or "full"
    prof = PROFILES[args.profile]
    args.model = args.model or prof.model or "cnn"
    args.patterns = args.patterns or list(prof.patterns or PATTERNS)
    args.seeds = args.seeds or prof.seeds
    args.variants, args.notes = variants_to_run(args.methods or prof.variants or METHODS)
    args.notes += check_physical(args.variants, args.model, args.dataset, bool(args.methods))
    if args.profile == "standard":
        args.run = args.run or f"{args.model}-standard-{machine_slug()}"
        args.out = args.out or f"results/accuracy/{args.run}"
    args.run = args.run or f"{args.model}-{args.profile}-{time.strftime('%Y%m%d')}"


def _run(args, argv) -> int:
    curves, notes = None, []
    command = "python -m bimask.compare " + " ".join(argv or sys.argv[1:])
    if args.report_only:
        src = check_input_file(args.report_only, "--report-only")
        run = args.run or src.stem
        out = Path(args.out) if args.out else src.parent
        names = [f"{run}.png", f"{run}.md"]  # the input CSVs are read, never rewritten
        df = read_results(src, NEEDED, "bimask.compare results file")
        curves_csv = src.with_name(f"{src.stem}_curves.csv")
        if curves_csv.is_file():
            curves = read_results(curves_csv, CURVE_COLUMNS, "bimask.compare curves file")
        meta = read_meta(src)
        if meta is None:
            profile = None
            notes = [f"rebuilt by `{command}`; the run's own command and notes were not "
                     f"recorded ({src.stem}_meta.json is missing)"]  # fmt: skip
        else:
            profile, notes = meta["profile"], [*meta["notes"], f"report rebuilt by `{command}`"]
            command = meta["command"]
    else:
        resolve(args)
        run, notes, profile = args.run, args.notes, args.profile
        out = Path(args.out or "results/accuracy")
        names = [f"{run}.csv", f"{run}_curves.csv", f"{run}_meta.json", f"{run}.png", f"{run}.md"]
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
    if not args.report_only and args.profile == "standard":
        dense = 100 * df[df.method == "dense"].final_test_top1.mean()
        met = "meets" if dense >= 90 else "misses (rerun with --epochs 4 --seeds 5)"
        notes = [*notes, f"dense top-1 {dense:.2f}%: {met} the standard profile's 90% target"]
    if not args.report_only:
        with atomic_path(out / f"{run}.csv") as tmp:
            df.to_csv(tmp, index=False)
        with atomic_path(out / f"{run}_curves.csv") as tmp:
            curves.to_csv(tmp, index=False)
        write_meta(out / f"{run}_meta.json", command, profile, notes)
    plot(df, summarize(df), out / f"{run}.png", curves)
    why = STANDARD_WHY if profile == "standard" else ""
    text = report(df, run, out, command, notes, why)
    atomic_write_text(out / f"{run}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
