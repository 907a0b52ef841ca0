"""The grid of bimask.compare: profiles, variants, and resumable per-cell training.

A *variant* is a method with its settings (``VARIANTS``): ``bimask-random`` is the paper's
Bi-Mask (best of 100 random permutations), ``bimask-greedy`` ours; ``bimask-physical`` realises
the permutation physically (``perm_realisation="physical"``) and exists only where TrainConfig
has that field. A plain method name (``srste``, ``tmask``, ``bimask``) is a variant that takes
``--permutation``.

A *cell* is one (variant, pattern, seed) training run. Each finished cell is written atomically
to ``<work-dir>/<run>/cells/<variant>-<pattern>-s<seed>.json`` (its config, result row and
curves); a re-run of the same command skips the cells that are there (and resumes a cell killed
mid-way from its last epoch checkpoint), so a killed study continues where it stopped. A cell
file written with another config is an error before anything trains.

The standard profile (``python -m bimask.compare --profile standard``) is sized for a quiet
2-core CPU; see ``STANDARD_WHY`` for the measured pilot and the budget arithmetic.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bimask.outputs import atomic_write_text
from bimask.train.config import TrainConfig
from bimask.train.loop import train

COLUMNS = ["model", "dataset", "variant", "method", "pattern", "permutation", "seed", "epochs",
           "final_test_top1", "best_test_top1", "mask_overhead_frac", "bwd_kept_frac", "grad_gap",
           "train_time_s", "device"]  # fmt: skip


def physical_available() -> bool:
    """Whether this checkout's TrainConfig can realise the permutation physically."""
    return "perm_realisation" in TrainConfig.__dataclass_fields__


# name -> TrainConfig fields (a method name alone takes --permutation)
VARIANTS: dict[str, dict] = {
    "srste": {"method": "srste"},
    "tmask": {"method": "tmask"},
    "bimask": {"method": "bimask"},
    "bimask-random": {"method": "bimask", "permutation": "random"},
    "bimask-greedy": {"method": "bimask", "permutation": "greedy"},
    "bimask-physical": {
        "method": "bimask",
        "permutation": "greedy",
        "perm_realisation": "physical",
    },  # fmt: skip
}

STANDARD_WHY = """\
Standard profile, sized from a pilot on this 2-core AMD EPYC (2026-12-02; the machine was shared
with other jobs, so its conditions are stated with each number):
  - throughput (load 0.3, nearly quiet): one 128-image SGD step of `cnn_small` (the ResNet at
    widths 16/32/64; stem and classifier dense by role, every other conv sparse) takes 80-106 ms
    dense and 67-96 ms for srste / tmask / bimask (greedy or random) at 2:4: mask and permutation
    work is a few percent, inside the noise. About 90 ms x 468 steps = 42 s an epoch of the 60k
    images, plus about 5 s of evaluation and probes: 48 s. The full-width `cnn` takes 176-195 ms.
  - accuracy (load 4-11, so its time says nothing): dense `cnn_small`, one epoch with the cosine
    schedule over that epoch, reached 87.4% top-1 (976 s of wall time under that load).
    Three epochs are chosen to pass 90% (the report states whether dense met it; if not, run
    --epochs 4 --seeds 5, which fits the same budget).
  - budget: one cell = 3 x 48 s = 144 s, about 150 s with start-up. Per seed: dense + srste,
    tmask, bimask-random, bimask-greedy (+ bimask-physical where available) at 2:4 = 6 cells =
    15 min; 7 seeds = 42 cells = 105 min on a quiet machine (88 min without the physical
    variant), inside 2 hours with 15 min of headroom.
  - seeds: the SE of a paired difference is sd/sqrt(n). Assumed per-seed sd of one model's top-1
    at full data: about 0.25 points (the quick run's dense sd was 0.13 points on 2,000 test
    images; its sparse sds of 0.4-2 points come from 46-step training and do not carry over);
    with pairing (shared initialisation and data order) the difference's sd is at most
    sqrt(2) x 0.25 = 0.35, so n = (0.35 / 0.15)^2 = 5.4: 7 seeds keep SE <= 0.15 for an sd up
    to 0.40. --seeds overrides; the report gives each difference's SE against the target.
  - patterns: only 2:4 fits. Each further pattern costs 5 cells a seed (88 min at 7 seeds);
    --patterns 2:4 4:8 --seeds 4 trades power for a second pattern (the report's SE column
    says what that costs)."""


@dataclass(frozen=True)
class Profile:
    epochs: int
    train_subset: int | None
    test_subset: int | None
    batch_size: int = 128
    model: str | None = None  # None: --model
    seeds: int = 3
    patterns: tuple[str, ...] | None = None  # None: --patterns
    variants: tuple[str, ...] | None = None  # None: --methods


PROFILES: dict[str, Profile] = {
    "quick": Profile(epochs=2, train_subset=3000, test_subset=2000),  # < 20 min on 2 cores
    "standard": Profile(
        epochs=3,
        train_subset=None,
        test_subset=None,
        model="cnn_small",
        seeds=7,
        patterns=("2:4",),
        variants=("srste", "tmask", "bimask-random", "bimask-greedy", "bimask-physical"),
    ),  # fmt: skip
    "full": Profile(epochs=30, train_subset=None, test_subset=None),  # for GPU hosts
}


@dataclass(frozen=True)
class Cell:
    variant: str
    pattern: str  # "-" for dense
    seed: int
    config: TrainConfig

    @property
    def name(self) -> str:
        return f"{self.variant}-{self.pattern.replace(':', 'x')}-s{self.seed}"


def variants_to_run(names) -> tuple[list[str], list[str]]:
    """(variants this checkout can train, notes on those it cannot)."""
    keep, notes = [], []
    for v in names:
        if v == "bimask-physical" and not physical_available():
            notes.append("bimask-physical skipped: this checkout has no perm_realisation option")
            continue
        keep.append(v)
    return keep, notes


def check_physical(variants: list[str], model: str, dataset: str, explicit: bool) -> list[str]:
    """Notes on dropping bimask-physical where ``model`` has no Linear -> elementwise -> Linear
    pair (a profile's default set); asked for by name (``explicit``), that is a ValueError,
    raised before anything trains."""
    if "bimask-physical" not in variants:
        return []
    from bimask.train.loop import build_sparse_model

    cfg = TrainConfig(model=model, dataset=dataset, **VARIANTS["bimask-physical"])
    try:
        build_sparse_model(cfg)
    except ValueError as err:
        if explicit:
            raise ValueError(f"--methods bimask-physical: {err}") from None
        variants.remove("bimask-physical")
        return [f"bimask-physical skipped: {err}"]
    return []


def plan(args, work: Path) -> list[Cell]:
    """Every cell of the grid, each TrainConfig built (and so validated) before any trains."""
    prof = PROFILES[args.profile]
    settings = {"epochs": args.epochs or prof.epochs, "batch_size": prof.batch_size,
                "train_subset": prof.train_subset, "test_subset": prof.test_subset}  # fmt: skip
    if args.dataset == "synthetic":  # the toy set is smaller than the quick profile's subsets
        settings |= {"train_subset": None, "test_subset": None}
    jobs = [("dense", "-")] + [(v, p) for p in args.patterns for v in args.variants]
    cells = []
    for seed in range(args.seeds):
        for variant, pattern in jobs:
            fields = {"method": "dense"} if variant == "dense" else VARIANTS[variant]
            cfg = TrainConfig(
                model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                pattern="2:4" if pattern == "-" else pattern, seed=seed, device=args.device,
                out=str(work / "runs" / f"{variant}-{pattern.replace(':', 'x')}-s{seed}"),
                **({"permutation": args.permutation} | fields | settings),
            )  # fmt: skip
            cells.append(Cell(variant, pattern, seed, cfg))
    return cells


def _key(cfg: TrainConfig) -> dict:
    """What must match for a cell file to stand for this cell (paths and resume excluded)."""
    return {k: v for k, v in cfg.to_dict().items() if k not in ("out", "resume", "data_dir")}


def done_cells(cells: list[Cell], cells_dir: Path) -> dict[str, dict]:
    """Cell name -> its finished record; a record of another config is a ValueError."""
    done = {}
    for cell in cells:
        path = cells_dir / f"{cell.name}.json"
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
            config = record["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a cell record ({err}); delete it to retrain") from None
        if config != _key(cell.config):
            diff = sorted(k for k in set(config) | set(_key(cell.config))
                          if config.get(k) != _key(cell.config).get(k))  # fmt: skip
            raise ValueError(
                f"{path} was trained with other settings ({', '.join(diff)}); use another --run "
                "or --work-dir, or delete the cells folder to start afresh"
            )
        done[cell.name] = record
    return done


def run_cells(cells: list[Cell], cells_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the cells not done yet (each written as it finishes); all rows and curves."""
    done = done_cells(cells, cells_dir)
    if done:
        print(f"resuming: {len(done)} of {len(cells)} cells done, skipped", file=sys.stderr)
    cells_dir.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for i, cell in enumerate(cells):
        record = done.get(cell.name)
        if record is None:
            t0 = time.perf_counter()
            resume = (Path(cell.config.out) / "checkpoint.pt").is_file()
            s = train(TrainConfig.from_dict(cell.config.to_dict() | {"resume": resume}))
            s |= {"pattern": cell.pattern, "variant": cell.variant}
            record = {"config": _key(cell.config), "row": {k: s.get(k) for k in COLUMNS},
                      "history": s["history"]}  # fmt: skip
            atomic_write_text(cells_dir / f"{cell.name}.json", json.dumps(record, indent=1))
            print(f"[{i + 1}/{len(cells)}] {cell.variant} {cell.pattern} seed {cell.seed}: top1 "
                  f"{s['final_test_top1']:.4f} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
        rows.append(record["row"])
        curves += [{"variant": cell.variant, "method": cell.config.method,
                    "pattern": cell.pattern, "seed": cell.seed, **h}
                   for h in record["history"]]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(curves)
