"""``python -m suite step``: the measured training step of an MLP block (suite.step_bench), its
CSV, JSON sidecar and Markdown table; every argument is checked before anything is measured or
written."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from bimask import METHODS, PERMUTATIONS
from bimask import cli_args as ca
from bimask.backends import BACKENDS
from bimask.machine import describe
from bimask.outputs import atomic_path, atomic_write_text, check_output_dir
from suite import step_report, store
from suite.device import capture
from suite.step_bench import METHOD_ORDER, PARTS, StepSpec, run_step_bench
from suite.step_shapes import load_blocks

CPU_SCALE = 8  # the CPU tier's default: every width and the tokens / 8 (minutes -> seconds)
DTYPES = ("float32", "bfloat16", "float16")
DEFAULTS = {"cpu": ("float32", 1.0), "cuda": ("bfloat16", 2.0)}  # dtype, timing budget per row
FILES = ("step.csv", "step.json", "step.md")
LEAD = ["block", "d_model", "d_hidden", "tokens", "method", "pattern", "realisation", "backend",
        "status", "reason", "step_ms", "iqr_ms", "min_ms", "reps", "converged",
        *(f"{p}_ms" for p in PARTS), "dense_ref", "dense_ms", "speedup", "speedup_lo",
        "speedup_hi", "projected_ms", "projected_speedup", "projection_error",
        "projection_note"]  # fmt: skip


def linear_backends() -> list[str]:
    """The training backends with Linear GEMMs, in registry order."""
    return [name for name, kinds in BACKENDS.items() if "linear" in kinds]


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ca.UsageError(f"--device {name}: CUDA is not available here; use --device cpu")
    return name


def _scaling(args, device: str) -> tuple[int, int | None, str]:
    """(scale, tokens, what the report says about it) from --full-shapes/--scale/--tokens."""
    if args.full_shapes and (args.scale or args.tokens):
        raise ca.UsageError(
            "--full-shapes runs the real shapes; drop --scale/--tokens (or --full-shapes)"
        )
    scale = args.scale or (CPU_SCALE if device == "cpu" and not args.full_shapes else 1)
    if args.tokens is None and scale == 1:
        return 1, None, "full shapes"
    what = []
    if scale > 1:
        what.append(f"every width divided by {scale} (rounded to a multiple of 16)")
        what.append("the tokens too" if args.tokens is None else "")
    if args.tokens is not None:
        what.append(f"{args.tokens:,} tokens per block")
    why = " (the CPU tier's default)" if scale == CPU_SCALE and not args.scale else ""
    return scale, args.tokens, "scaled" + why + ": " + ", ".join(w for w in what if w)


def _blocks(args, scale: int, tokens: int | None):
    blocks = load_blocks(args.shapes)
    if args.blocks:
        names = [b.name for b in blocks]
        for name in args.blocks:
            ca.one_of(name, names, "--blocks")
        blocks = [b for b in blocks if b.name in args.blocks]
    scaled = [b.scaled(scale, tokens) for b in blocks]
    labels = "; ".join(
        f"{s.name} {s.label}" + ("" if s == b else f" (real: {b.label})")
        for s, b in zip(scaled, blocks, strict=True)
    )
    return tuple(scaled), labels


def _check_out(out: Path, force: bool) -> None:
    check_output_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ca.UsageError(
            f"--out {out} is not empty; give a new folder, or --force to replace its "
            f"{', '.join(FILES)}"
        )


def _sweep(path: str | None, device_name: str):
    """The GEMM sweep for the projection (run folder or results.csv), checked up front."""
    if path is None:
        return None, step_report.NO_SWEEP
    try:
        df, meta = store.load(path)
    except FileNotFoundError as err:
        raise ca.UsageError(
            f"--sweep: {err}; give a suite bench run folder or its results.csv"
        ) from None
    except ValueError as err:
        raise ca.UsageError(f"--sweep: {err}") from None
    recorded = (meta.get("device_before") or {}).get("name")
    if recorded and recorded != device_name:
        raise ca.UsageError(
            f"--sweep {path} was measured on {recorded!r}, this run is on {device_name!r}; "
            "give a sweep of this device (its projection would not be comparable)"
        )
    where = f"device {recorded}" if recorded else "its device not recorded"
    return df, f"the step view (suite/step_view.py) of the sweep {path} ({where})"


def cmd_step(args) -> int:
    out = Path(args.out)
    _check_out(out, args.force)
    device = _device(args.device)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    dtype, budget = DEFAULTS[kind]
    scale, tokens, scaling = _scaling(args, kind)
    blocks, labels = _blocks(args, scale, tokens)
    device_name = describe(device)
    sweep, projection = _sweep(args.sweep, capture(device)["name"])
    spec = StepSpec(
        blocks=blocks,
        patterns=tuple(dict.fromkeys(args.patterns)),
        methods=tuple(m for m in METHOD_ORDER if m in (args.methods or METHOD_ORDER)),
        backends=tuple(b for b in linear_backends() if b in (args.backends or BACKENDS)),
        device=device,
        dtype=args.dtype or dtype,
        permutation=args.permutation,
        perm_every=args.perm_every,
        budget_s=args.budget_s or budget,
        time_budget_s=args.time_budget,
        target_rse=args.target_rse,
        seed=args.seed,
    )
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    df = pd.DataFrame(run_step_bench(spec, log))
    df = step_report.add_speedups(df)
    df = step_report.add_projection(df, sweep, spec.perm_every)
    refs = sorted(df.dense_ref.dropna().unique()) if "dense_ref" in df else []
    meta = {
        "schema_version": 1,
        "git_commit": store.git_commit(),
        "git_dirty": store.git_dirty(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "device": kind,
        "device_name": device_name,
        "device_record": capture(device),
        "dtype": spec.dtype,
        "scaling": f"{scaling}: {labels}",
        "permutation": spec.permutation,
        "perm_every": spec.perm_every,
        "budget_s": spec.budget_s,
        "time_budget_s": spec.time_budget_s,
        "target_rse": spec.target_rse,
        "speedup_ref": ", ".join(f"{r}" for r in refs) or "no dense step ran",
        "projection": projection,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    df = df.assign(device=device_name, dtype=spec.dtype, git_commit=meta["git_commit"],
                   permutation=spec.permutation, perm_every=spec.perm_every,
                   scaling=scaling)  # fmt: skip
    df = df[[c for c in LEAD if c in df] + [c for c in df if c not in LEAD]]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "step.csv") as tmp:
        df.to_csv(tmp, index=False)
    atomic_write_text(out / "step.json", json.dumps(meta, indent=2, default=str))
    atomic_write_text(out / "step.md", step_report.markdown(df, meta))
    ok = int((df.status == "ok").sum()) if len(df) else 0
    print(f"{ok} of {len(df)} rows measured in {meta['wall_s']:.0f} s -> {out / 'step.md'}")
    return 0


def add_parser(sub, fmt) -> None:
    """The ``step`` subcommand."""
    s = sub.add_parser(
        "step",
        formatter_class=fmt,
        help="measure a training step of an MLP block per method x backend x pattern",
        description="Forward + backward + weight update of Linear -> GELU -> Linear at real "
        "model widths (suite/shapes/step.toml), broken into masks, permutation, compression, "
        "gather and the three GEMMs (bimask.profile), with the speed-up over the fastest dense "
        f"step. On a CPU the shapes are scaled by {CPU_SCALE} unless --full-shapes.",
        epilog="example: python -m suite step --blocks vit_l.mlp --scale 16 --methods dense bimask "
        "--backends torch --budget-s 0.2 --out /tmp/step16\n"
        "         python -m suite step --budget-s 0.5 --time-budget 60 --out /tmp/step-cpu"
        "   # make bench's CPU step\n"
        "         python -m suite step --device cuda --full-shapes --sweep runs/bench/gpu "
        "--out runs/step/gpu",
    )
    s.add_argument("--out", default="runs/step", help="a new or empty folder (default runs/step)")
    s.add_argument("--force", action="store_true", help="replace the step files in a used --out")
    s.add_argument("--device", type=ca.device, default="auto", help="auto, cpu, cuda, cuda:1")
    s.add_argument("--shapes", type=ca.existing_file, help="a step shapes file (step.toml)")
    s.add_argument("--blocks", nargs="+", help="block names of the shapes file (default: all)")
    s.add_argument("--patterns", nargs="+", type=ca.pattern, default=["2:4"])
    s.add_argument("--methods", nargs="+", choices=sorted(METHODS))
    s.add_argument("--backends", nargs="+", choices=sorted(BACKENDS), help="default: all")
    s.add_argument("--full-shapes", action="store_true", help="the real shapes (GPU default)")
    s.add_argument("--scale", type=ca.positive_int, help=f"divide every width and the tokens "
                   f"(CPU default {CPU_SCALE})")  # fmt: skip
    s.add_argument("--tokens", type=ca.positive_int, help="tokens per block (widths as scaled)")
    s.add_argument("--dtype", choices=DTYPES, help="default float32 on CPU, bfloat16 on CUDA")
    s.add_argument("--permutation", choices=sorted(PERMUTATIONS), default="greedy")
    s.add_argument("--perm-every", type=ca.positive_int, default=100)
    s.add_argument("--budget-s", type=ca.positive_float, help="timing budget per row (CPU 1, "
                   "GPU 2)")  # fmt: skip
    s.add_argument("--time-budget", type=ca.positive_float, help="seconds for the whole run; "
                   "rows it does not reach are 'skipped'")  # fmt: skip
    s.add_argument("--target-rse", type=ca.positive_float, default=0.02)
    s.add_argument("--sweep", help="a suite bench run of this device (folder or results.csv): "
                   "the step view's projection beside each row")  # fmt: skip
    s.add_argument("--seed", type=ca.nonneg_int, default=0)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_step)


__all__ = ["add_parser", "cmd_step", "linear_backends"]
