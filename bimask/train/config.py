"""Training options as one value object (the CLI fills it; checkpoints and summaries record it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    model: str = "cnn"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    method: str = "bimask"
    pattern: str = "2:4"
    permutation: str = "greedy"
    perm_every: int = 100
    candidates: int = 100  # for permutation="random"
    decay: float = 2e-4
    epochs: int = 10
    batch_size: int = 128
    optimizer: str | None = None  # None: sgd for cnn/mlp, adamw for vit
    lr: float | None = None  # None: 0.1 (sgd) or 1e-3 (adamw)
    weight_decay: float | None = None  # None: 5e-4 (sgd) or 0.05 (adamw)
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    train_subset: int | None = None  # first N training images only (quick profiles)
    test_subset: int | None = None
    seed: int = 0
    device: str = "auto"
    out: str = "runs/train"
    resume: bool = False
    stop_after: int | None = None  # stop after this many epochs of this invocation (preemption)
    conv_order: str = "nhwc"
    backend: str = "torch"  # bimask.backends: torch, or kernels (this project's sparse GEMMs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
