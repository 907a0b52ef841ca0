"""Checkpoints that resume exactly: model, optimizer, schedule, masks and permutations, RNG."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, **state) -> None:
    state["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a killed run never leaves a half-written checkpoint


def load_checkpoint(path: Path, device: torch.device) -> dict:
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:
        raise RuntimeError(
            f"cannot load checkpoint {path}: {err}; delete it or drop --resume"
        ) from None
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state
