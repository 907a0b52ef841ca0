"""Datasets for training: Fashion-MNIST from local IDX files, and a deterministic synthetic set.

Nothing here downloads anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bimask.data.idx import IdxError, read_idx

DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Fashion-MNIST training-set pixel statistics (computed from the 60k training images).
_MEAN, _STD = 0.2860, 0.3530


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 1, 28, 28) float32, normalised
    labels: torch.Tensor  # (N,) int64


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int = 10


class DataMissingError(FileNotFoundError):
    pass


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataMissingError(
        f"Fashion-MNIST file {stem}[.gz] not found in {data_dir}. Install the data with "
        "'apt-get install dataset-fashion-mnist' (files land in /usr/share/datasets/fashion-mnist)"
        ", or pass --data-dir DIR holding the four IDX files; or use --dataset synthetic."
    )


def _split(images: np.ndarray, labels: np.ndarray, where: str) -> Split:
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise IdxError(f"{where}: images {images.shape} and labels {labels.shape} do not match")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).sub_(_MEAN).div_(_STD)
    return Split(x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def _check_labels(labels: np.ndarray, path: Path, num_classes: int = 10) -> np.ndarray:
    """Fashion-MNIST labels are class indices 0..9; anything else is a wrong or corrupt file."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise IdxError(
            f"{path}: {bad.size} label(s) outside 0..{num_classes - 1} (e.g. {int(bad[0])}); "
            "this is not a Fashion-MNIST label file, or it is corrupt"
        )
    return labels


@functools.cache
def load_fashion_mnist(data_dir: str | Path | None = None) -> Dataset:
    """Load the four IDX files from ``data_dir`` (default: the Debian package's directory)."""
    data_dir = Path(data_dir) if data_dir else DEFAULT_FASHION_DIR  # cached per directory
    paths = {k: _find(data_dir, v) for k, v in FASHION_FILES.items()}
    arrays = {k: read_idx(p, 3 if "images" in k else 1) for k, p in paths.items()}
    for k in ("train_labels", "test_labels"):
        _check_labels(arrays[k], paths[k])
    train = _split(arrays["train_images"], arrays["train_labels"], str(data_dir / "train-*"))
    test = _split(arrays["test_images"], arrays["test_labels"], str(data_dir / "t10k-*"))
    return Dataset("fashion-mnist", train, test)


def make_synthetic(n_train: int = 2048, n_test: int = 512, seed: int = 0) -> Dataset:
    """A deterministic 10-class 28x28 task: fixed class prototypes plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(10, 1, 28, 28, generator=g)

    def draw(n: int) -> Split:
        labels = torch.randint(0, 10, (n,), generator=g)
        images = prototypes[labels] + 4.0 * torch.randn(n, 1, 28, 28, generator=g)
        return Split(images, labels)

    return Dataset("synthetic", draw(n_train), draw(n_test))


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    if name == "synthetic":
        return make_synthetic(seed=seed)
    raise ValueError(f"unknown dataset {name!r}; choose 'fashion-mnist' or 'synthetic'")
