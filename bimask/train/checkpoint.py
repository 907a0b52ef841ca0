"""Checkpoints that resume exactly: model, optimizer, schedule, masks and permutations, RNG.

A checkpoint is data, never code. It holds only tensors, numbers, strings, lists and dicts (RNG
states are tensors, the run's options a plain dict), and it is read with
``torch.load(weights_only=True)``, whose unpickler refuses every other type: a file that would
build an object of its own choosing (a ``__reduce__`` that runs a command) is refused before any
of it runs. Reading (:func:`read_checkpoint`) has no side effects and checks the whole file
before the caller touches any state (model, optimizer, RNG).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

KIND = "bimask-checkpoint"
SCHEMA = 1
# What a checkpoint holds besides kind and schema, with the type each entry must have.
FIELDS = {
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
    "epoch": int,
    "history": list,
    "config": dict,
    "torch_rng": torch.Tensor,
}
# Options a resumed run may change: where it runs and writes, not what it trains. Tuned configs
# only choose how each GEMM is launched (tiles, split-K, algorithm), not what it computes.
MAY_CHANGE_ON_RESUME = frozenset(
    {
        "device",
        "out",
        "resume",
        "stop_after",
        "data_dir",
        "backend",
        "tuned_configs",
        "profile_steps",
    }
)


class CheckpointError(ValueError):
    """A file that cannot be resumed from (missing, unsafe, damaged, foreign or mismatched)."""


def save_checkpoint(path: Path, **state) -> None:
    """Write ``state`` (the FIELDS above) with the RNG states; atomic (temporary file, rename)."""
    missing = FIELDS.keys() - state.keys() - {"torch_rng"}
    if missing:
        raise ValueError(f"save_checkpoint needs {sorted(missing)}")
    state = {"kind": KIND, "schema": SCHEMA, **state, "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = list(torch.cuda.get_rng_state_all())
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a killed run never leaves a half-written checkpoint


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The validated contents of a checkpoint; CheckpointError says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"--resume: there is no checkpoint at {path}; drop --resume to start a new run, "
            "or give the --out folder of the run to continue"
        )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain data, which could run code "
                "when loaded; it was refused unread. Only resume checkpoints this project wrote"
            ) from None
        raise CheckpointError(f"{path} is not a checkpoint (unreadable: {err})") from None
    except Exception as err:  # zip/pickle errors of truncated or foreign files
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or damaged?): {err}"
        ) from None
    _validate(state, path)
    return state


def _validate(state, path: Path) -> None:
    if not isinstance(state, dict) or state.get("kind") != KIND:
        if isinstance(state, dict) and {"model", "torch_rng"} <= state.keys():
            raise CheckpointError(
                f"{path} was written by an older version of bimask-suite (no schema); this "
                f"version reads checkpoint schema {SCHEMA}: start a new run in another --out"
            )
        raise CheckpointError(f"{path} is not a bimask-suite training checkpoint")
    if state.get("schema") != SCHEMA:
        raise CheckpointError(
            f"{path} has checkpoint schema {state.get('schema')!r}; this version reads "
            f"{SCHEMA}: resume it with the version that wrote it, or start a new run"
        )
    for name, kind in FIELDS.items():
        if not isinstance(state.get(name), kind):
            raise CheckpointError(
                f"{path} is damaged: {name!r} is missing or not a {kind.__name__}"
            )
    if state["torch_rng"].dtype != torch.uint8:
        raise CheckpointError(f"{path} is damaged: 'torch_rng' is not a byte tensor")


def check_resume_config(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume a run with other training options than the ones it was started with."""
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
        for k in sorted(current.keys() | saved.keys())
        if k not in MAY_CHANGE_ON_RESUME and saved.get(k) != current.get(k)
    ]
    if diffs:
        raise CheckpointError(
            f"{path} was made with other training options ({'; '.join(diffs)}); resume with "
            "the original options, or start a new run in another --out"
        )


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda_rng"]])
