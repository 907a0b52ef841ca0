"""``suite advise ACCURACY_RUN BENCH_RUN``: which N:M method to use, accuracy and speed together.

Joins an accuracy run (the CSV ``python -m bimask.compare`` wrote) with a bench run (a
``suite bench`` run folder) on (method, pattern):
  - the top-1 gap to dense, paired over seeds, with its 95% t interval (bimask.claims);
  - the training-step speed-up over dense with its interval, on the bench run's device: measured
    where a ``step.csv`` of ``python -m suite step`` lies in or beside the bench run (labelled
    "measured"), else projected from the GEMM sweep by the step view (suite/step_view.py),
    summed over the bench layers that stand for the accuracy run's model (``MODEL_LAYERS``;
    labelled "projected from the GEMM sweep").
Writes advice.md, advice.csv and pareto.png (speed-up vs accuracy gap, one point per method x
pattern, error bars both ways) and answers "for at most X points of accuracy lost, the fastest
choice on this device is ...". It refuses (exit 2, before writing anything) to join runs whose
models or patterns do not match, and says what is missing.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path

import pandas as pd

from bimask import claims
from bimask.outputs import atomic_path, atomic_write_text, check_output_dir, check_output_file
from suite import store
from suite.step_view import step_view

# accuracy model -> bench layers standing for its GEMMs (the suite's shapes files name layers
# <model>.<layer>); bimask's small 28x28 models have no layers of their own in a sweep
MODEL_LAYERS = {
    "cnn": ["resnet50.*"],
    "cnn_small": ["resnet50.*"],
    "vit": ["vit_b.*"],
    "mlp": ["vit_b.fc*"],
}
STEP_COLUMNS = ["method", "pattern", "speedup"]  # step.csv: optional speedup_lo/hi, model
BUDGETS = (0.5, 1.0, 2.0)  # points of top-1 a user may give up
COLUMNS = ["variant", "method", "pattern", "top1", "gap", "gap_lo", "gap_hi", "gap_se",
           "seeds", "speedup", "speedup_lo", "speedup_hi", "speed_source", "pareto"]  # fmt: skip


def read_accuracy(path: Path) -> pd.DataFrame:
    """The results CSV of bimask.compare (a folder: the CSV named after it, or its only one)."""
    if path.is_dir():
        named = path / f"{path.name}.csv"
        found = [p for p in sorted(path.glob("*.csv")) if not p.stem.endswith("_curves")]
        path = named if named.is_file() else found[0] if len(found) == 1 else path / "?.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no accuracy results CSV at {path}; give the CSV that "
                                "python -m bimask.compare wrote")  # fmt: skip
    df = pd.read_csv(path)
    need = ["model", "method", "pattern", "seed", "final_test_top1"]
    if missing := [c for c in need if c not in df]:
        raise ValueError(f"{path} is not a bimask.compare results file: missing {missing}")
    return df if "variant" in df else df.assign(variant=df.method)


def find_step_csv(bench: Path) -> Path | None:
    """A measured step benchmark in or beside the bench run."""
    for p in (bench / "step.csv", bench.parent / "step.csv"):
        if p.is_file():
            return p
    return None


def measured_speed(path: Path, model: str) -> pd.DataFrame:
    """(method, pattern) -> best measured speed-up of ``suite step``'s step.csv."""
    df = pd.read_csv(path)
    if missing := [c for c in STEP_COLUMNS if c not in df]:
        raise ValueError(f"{path} is not a step benchmark: missing columns {missing}")
    if "model" in df and model not in set(df.model):
        raise ValueError(
            f"{path} measured models {sorted(set(df.model))}, not {model}; run "
            f"python -m suite step for {model} or move the step.csv aside"
        )
    if "model" in df:
        df = df[df.model == model]
    df = df.assign(speedup_lo=df.get("speedup_lo", df.speedup),
                   speedup_hi=df.get("speedup_hi", df.speedup))  # fmt: skip
    best = df.loc[df.groupby(["method", "pattern"]).speedup.idxmax()]
    return best[["method", "pattern", "speedup", "speedup_lo", "speedup_hi"]].assign(
        speed_source="measured (step.csv)"
    )


def projected_speed(results: pd.DataFrame, model: str, layers: list[str] | None) -> pd.DataFrame:
    """(method, pattern) -> the step view's speed-up summed over the model's bench layers: the
    method's step time is sum(dense_i / speedup_i) over layers i, its bounds likewise."""
    globs = layers or MODEL_LAYERS.get(model)
    have = sorted(set(results.layer.dropna()) - {"-"})
    if not globs:
        raise ValueError(f"no bench layers are known for model {model!r}; pass --layers GLOB "
                         f"(the bench run has {', '.join(have)})")  # fmt: skip
    chosen = [n for n in have if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not chosen:
        raise ValueError(f"the bench run has no layer of model {model} (looked for "
                         f"{' '.join(globs)}; it has {', '.join(have) or 'none'}); pass --layers "
                         "GLOB or bench a shapes file with those layers")  # fmt: skip
    step = step_view(results)
    step = step[step.layer.isin(chosen)]
    dense = step[step.method == "dense"].set_index(["layer", "tokens", "pattern"]).step_ms
    rows = []
    for (method, pattern), g in step.groupby(["method", "pattern"]):
        d = dense.loc[list(zip(g.layer, g.tokens, g.pattern, strict=True))].to_numpy()
        total = d.sum()
        rows.append({"method": method, "pattern": pattern,
                     "speedup": total / (d / g.speedup.to_numpy()).sum(),
                     "speedup_lo": total / (d / g.speedup_lo.to_numpy()).sum(),
                     "speedup_hi": total / (d / g.speedup_hi.to_numpy()).sum()})  # fmt: skip
    label = f"projected from the GEMM sweep ({', '.join(chosen)})"
    return pd.DataFrame(rows).assign(speed_source=label)


def check_patterns(acc: pd.DataFrame, speed: pd.DataFrame, wanted: list[str] | None) -> list:
    """The patterns to join; a ValueError naming what is missing where the runs differ."""
    acc_p = [p for p in acc.pattern.unique() if p != "-"]
    speed_p = sorted(set(speed.pattern))
    wanted = wanted or acc_p
    if missing := [p for p in wanted if p not in acc_p]:
        raise ValueError(f"the accuracy run has no pattern {', '.join(missing)} (it has "
                         f"{', '.join(acc_p)}); choose --patterns among those")  # fmt: skip
    if missing := [p for p in wanted if p not in speed_p]:
        common = [p for p in wanted if p in speed_p]
        hint = f"pass --patterns {' '.join(common)} to join those" if common else "bench them"
        raise ValueError(f"the bench run has no step timings at {', '.join(missing)} (it has "
                         f"{', '.join(speed_p) or 'none'}); {hint}")  # fmt: skip
    return wanted


def join(acc: pd.DataFrame, speed: pd.DataFrame, patterns: list[str]) -> pd.DataFrame:
    """One row per variant x pattern (and dense): gap to dense with CI, speed-up with interval."""
    dense = claims.seed_table(acc, "dense", "-")
    if not dense:
        raise ValueError("the accuracy run has no dense rows; its gaps need the dense baseline")
    speeds = speed.set_index(["method", "pattern"])
    source = speed.speed_source.iloc[0] if len(speed) else "-"
    rows = [{"variant": "dense", "method": "dense", "pattern": "-", "top1": _mean(dense) * 100,
             "gap": 0.0, "gap_lo": 0.0, "gap_hi": 0.0, "gap_se": 0.0, "seeds": len(dense),
             "speedup": 1.0, "speedup_lo": 1.0, "speedup_hi": 1.0,
             "speed_source": "reference"}]  # fmt: skip
    for pattern in patterns:
        for variant in (v for v in acc.variant.unique() if v != "dense"):
            table = claims.seed_table(acc, variant, pattern)
            if not table:
                continue
            method = acc[acc.variant == variant].method.iloc[0]
            p = claims.paired(table, dense)
            key = (method, pattern)
            s = speeds.loc[key] if key in speeds.index else None
            rows.append({"variant": variant, "method": method, "pattern": pattern,
                         "top1": _mean(table) * 100, "gap": p.diff, "gap_lo": p.lo,
                         "gap_hi": p.hi, "gap_se": p.se, "seeds": p.n,
                         "speedup": math.nan if s is None else float(s.speedup),
                         "speedup_lo": math.nan if s is None else float(s.speedup_lo),
                         "speedup_hi": math.nan if s is None else float(s.speedup_hi),
                         "speed_source": source if s is not None else
                         f"not in the bench run (no {method} step timings)"})  # fmt: skip
    out = pd.DataFrame(rows)
    return out.assign(pareto=pareto_front(out))[COLUMNS]


def _mean(table: dict) -> float:
    return sum(table.values()) / len(table)


def pareto_front(df: pd.DataFrame) -> list[bool]:
    """True where no other point is at least as fast and as accurate, and better in one."""
    pts = list(zip(df.gap, df.speedup, strict=True))
    ok = [not (math.isnan(g) or math.isnan(s)) for g, s in pts]
    return [
        ok[i]
        and not any(
            ok[j] and g2 >= g and s2 >= s and (g2 > g or s2 > s)
            for j, (g2, s2) in enumerate(pts)
            if j != i
        )
        for i, (g, s) in enumerate(pts)
    ]


def answers(df: pd.DataFrame, device: str) -> list[str]:
    """'For at most X points lost, the fastest choice on this device is ...' for each budget."""
    timed = df.dropna(subset=["speedup"])
    lines = []
    for x in BUDGETS:
        fits = timed[timed.gap >= -x - 1e-9]  # a gap of exactly -x fits
        best = fits.loc[fits.speedup.idxmax()]
        name = "dense" if best.variant == "dense" else f"{best.variant} at {best.pattern}"
        how = (f"{best.speedup:.2f}x the dense step ({best.speedup_lo:.2f}-"
               f"{best.speedup_hi:.2f}), {best.gap:+.2f} points (95% CI {best.gap_lo:+.2f} to "
               f"{best.gap_hi:+.2f})")  # fmt: skip
        if best.variant == "dense":
            how = "no sparse choice within that loss is faster than the dense step here"
        elif best.gap_lo < -x:
            how += f"; its interval reaches below -{x:g}, so the loss may be larger"
        lines.append(f"For at most {x:g} points of accuracy lost, the fastest choice on {device} "
                     f"is **{name}** ({how}).")  # fmt: skip
    sparse = timed[timed.variant != "dense"]
    if len(sparse) and (sparse.speedup_hi < 1).all():
        lines.append(f"On {device} every sparse training step is slower than the dense step "
                     f"(speed-ups {sparse.speedup.min():.2f}x to {sparse.speedup.max():.2f}x): "
                     "here sparse training costs time as well as accuracy.")  # fmt: skip
    return lines


def bench_device(bench: Path, results: pd.DataFrame | None, step: pd.DataFrame | None) -> str:
    """The bench run's device: its sidecar's record, else a device column."""
    meta = store.load_meta(bench / "results.csv") if (bench / "results.csv").is_file() else {}
    dev = meta.get("device_before") or {}
    if dev.get("name"):
        return dev["name"] + (f" ({dev['cores']} cores)" if dev.get("cores") else "")
    for df in (step, results):
        if df is not None and "device" in df and df.device.notna().any():
            return str(df.device.dropna().iloc[0])
    return "the bench device"


def advise(acc_path: Path, bench: Path, patterns=None, layers=None) -> tuple[pd.DataFrame, dict]:
    """The joined table and what the report needs; every check before anything is written."""
    acc = read_accuracy(acc_path)
    models = sorted(set(acc.model))
    if len(models) != 1:
        raise ValueError(f"{acc_path} mixes models {models}; give one model's run")
    step_csv = find_step_csv(bench if bench.is_dir() else bench.parent)
    has_results = bench.is_file() or (bench / "results.csv").is_file()
    results = store.load(bench)[0] if step_csv is None or has_results else None
    if step_csv:
        speed = measured_speed(step_csv, models[0])
    else:
        speed = projected_speed(results, models[0], layers)
    chosen = check_patterns(acc, speed, patterns)
    table = join(acc, speed, chosen)
    device = bench_device(bench, results, pd.read_csv(step_csv) if step_csv else None)
    info = {"model": models[0], "device": device, "source": speed.speed_source.iloc[0],
            "accuracy": str(acc_path), "bench": str(bench),
            "dataset": acc.dataset.iloc[0] if "dataset" in acc else "-",
            "epochs": acc.epochs.iloc[0] if "epochs" in acc else "-",
            "answers": answers(table, device)}  # fmt: skip
    return table, info


def cmd_advise(args) -> int:
    from suite.advise_report import pareto_figure, write_markdown

    out = Path(args.out or f"results/advice/{Path(args.accuracy).stem}--{Path(args.bench).name}")
    check_output_dir(out, "--out")
    names = ["advice.md", "advice.csv", "pareto.png"]
    for name in names:
        check_output_file(out / name, "output", make_parents=True)
    if not args.force and (existing := [n for n in names if (out / n).exists()]):
        raise ValueError(f"{', '.join(existing)} in {out} exist; pass --force to replace them")
    table, info = advise(Path(args.accuracy), Path(args.bench), args.patterns, args.layers)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "advice.csv") as tmp:
        table.to_csv(tmp, index=False)
    fig = pareto_figure(table, info)
    with atomic_path(out / "pareto.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    text = write_markdown(table, info)
    atomic_write_text(out / "advice.md", text)
    print(text)
    return 0


def add_parser(sub, fmt) -> None:
    from bimask import cli_args as ca

    a = sub.add_parser(
        "advise",
        help="accuracy x speed: which N:M method to use on the bench run's device",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m suite advise results/accuracy/cnn-quick-cpu.csv "
        "results/reference/bench/cpu --patterns 1:4 2:4 4:8",
        formatter_class=fmt,
    )
    a.add_argument("accuracy", help="a bimask.compare results CSV (or its folder)")
    a.add_argument("bench", help="a suite bench run folder (results.csv; step.csv if measured)")
    a.add_argument("--patterns", nargs="+", type=ca.pattern, help="join only these patterns")
    a.add_argument("--layers", nargs="+", help="bench layer globs standing for the model")
    a.add_argument("--out", help="output folder (default results/advice/<accuracy>--<bench>)")
    a.add_argument("--force", action="store_true", help="replace output files that exist")
    a.set_defaults(func=cmd_advise)
