"""Launched by torchrun from tests/test_train.py: train, then dump this rank's model state."""

import sys
from pathlib import Path

import torch

from bimask.train.config import TrainConfig
from bimask.train.distributed import init_distributed, shutdown
from bimask.train.loop import fit

out = Path(sys.argv[1])
cfg = TrainConfig(
    model="mlp",
    dataset="synthetic",
    method="bimask",
    permutation="random",
    candidates=5,
    perm_every=3,
    epochs=1,
    batch_size=64,
    device="cpu",
    out=str(out),
    perm_realisation=sys.argv[2] if len(sys.argv) > 2 else "gather",
)
info = init_distributed(torch.device("cpu"))
summary, model = fit(cfg, torch.device("cpu"), info)
torch.save(model.state_dict(), out / f"rank{info.rank}.pt")
shutdown(info)
