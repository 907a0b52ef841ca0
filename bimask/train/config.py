"""Training options as one value object (the CLI fills it; checkpoints and summaries record it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bimask import cli_args as ca
from bimask.backends import BACKENDS
from bimask.methods import METHODS
from bimask.models import MODELS
from bimask.permutations import PERMUTATIONS
from bimask.realisation import PERM_REALISATIONS

DATASETS = ("fashion-mnist", "synthetic")
OPTIMIZERS = ("sgd", "adamw")
# the rule each numeric field obeys (None is allowed where the field's default is None)
NUMBER_RULES = {
    "perm_every": ca.positive_int,
    "candidates": ca.positive_int,
    "decay": ca.nonneg_float,
    "epochs": ca.positive_int,
    "batch_size": ca.positive_int,
    "lr": ca.positive_float,
    "weight_decay": ca.nonneg_float,
    "warmup_epochs": ca.nonneg_float,
    "label_smoothing": ca.unit_fraction,
    "train_subset": ca.positive_int,
    "test_subset": ca.positive_int,
    "seed": ca.nonneg_int,
    "stop_after": ca.positive_int,
    "profile_steps": ca.nonneg_int,
}
NAME_RULES = {
    "model": MODELS,
    "dataset": DATASETS,
    "method": METHODS,
    "permutation": PERMUTATIONS,
    "optimizer": OPTIMIZERS,
    "conv_order": ("nhwc", "nchw"),
    "backend": BACKENDS,
    "perm_realisation": PERM_REALISATIONS,
}


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
    backend: str = "torch"  # bimask.backends: torch; kernels, cusparselt, cutlass_sm90 (CUDA)
    tuned_configs: str | None = None  # a sweep's winners (python -m suite export-tuned)
    # gather (the paper's) or physical (bimask only; a different method: bimask.physical)
    perm_realisation: str = "gather"
    profile_steps: int = 0  # profile the first N steps of each epoch (bimask.profile breakdown)

    def __post_init__(self) -> None:
        """Reject bad values here, so the CLI and the Python API fail alike (UsageError)."""
        for name, rule in NUMBER_RULES.items():
            value = getattr(self, name)
            if value is not None or self.__dataclass_fields__[name].default is not None:
                if isinstance(value, bool):
                    raise ca.UsageError(f"--{_opt(name)}: must be a number, got {value!r}")
                ca.check(value, rule, f"--{_opt(name)}")
        for name, names in NAME_RULES.items():
            if (value := getattr(self, name)) is not None:
                ca.one_of(value, names, f"--{_opt(name)}")
        ca.check(self.pattern, ca.pattern, "--pattern")
        if self.tuned_configs is not None and not (
            isinstance(self.tuned_configs, str) and self.tuned_configs.strip()
        ):
            raise ca.UsageError(f"--tuned-configs: must be a file name, got {self.tuned_configs!r}")
        ca.check(self.device, ca.device, "--device")
        if self.perm_realisation == "physical" and self.method != "bimask":
            raise ca.UsageError(
                f"--perm-realisation physical reorders rows by the Bi-Mask permutation; "
                f"--method {self.method} has none: use --method bimask or drop the option"
            )
        if self.warmup_epochs > self.epochs:
            raise ca.UsageError(
                f"--warmup-epochs {self.warmup_epochs} is longer than --epochs {self.epochs}; "
                "use at most as many warm-up epochs as epochs"
            )

    def check_sizes(self, n_train: int, n_test: int, world_size: int = 1) -> None:
        """Subsets and the batch must fit the data (each rank needs at least one full batch)."""
        for option, n, have in (
            ("--train-subset", self.train_subset, n_train),
            ("--test-subset", self.test_subset, n_test),
        ):
            if n is not None and n > have:
                raise ca.UsageError(
                    f"{option} {n} is larger than the {self.dataset} data ({have} images); "
                    f"use at most {have}"
                )
        per_rank = (self.train_subset or n_train) // world_size
        if self.batch_size > per_rank:
            where = "each of the ranks gets" if world_size > 1 else "there are"
            raise ca.UsageError(
                f"--batch-size {self.batch_size} is larger than the {per_rank} training images "
                f"{where}; use at most {per_rank}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _opt(field: str) -> str:
    return field.replace("_", "-")
