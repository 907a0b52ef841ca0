import gzip

import numpy as np
import pytest

from bimask.data import DataMissingError, load_fashion_mnist
from bimask.data.idx import IdxError, read_idx, write_idx


def _fake_fashion(tmp_path, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_train))
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_test))


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_roundtrip(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, arr)
    assert np.array_equal(read_idx(tmp_path / name, 3), arr)


def test_truncated_file_names_the_file(tmp_path):
    write_idx(tmp_path / "x.idx", np.zeros((5, 28, 28), np.uint8))
    raw = (tmp_path / "x.idx").read_bytes()
    (tmp_path / "x.idx").write_bytes(raw[:-100])
    with pytest.raises(IdxError, match=r"x\.idx.*truncated"):
        read_idx(tmp_path / "x.idx")
    (tmp_path / "y.idx.gz").write_bytes(gzip.compress(raw)[:-20])  # a cut gzip stream
    with pytest.raises(IdxError, match=r"y\.idx\.gz"):
        read_idx(tmp_path / "y.idx.gz")


def test_wrong_magic_and_dims(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(IdxError, match="bad magic"):
        read_idx(tmp_path / "bad.idx")
    write_idx(tmp_path / "labels.idx", np.zeros(4, np.uint8))
    with pytest.raises(IdxError, match="expected 3"):
        read_idx(tmp_path / "labels.idx", 3)


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_from_a_directory(tmp_path, gz):
    _fake_fashion(tmp_path, gz=gz)
    data = load_fashion_mnist(str(tmp_path))
    assert data.train.images.shape == (20, 1, 28, 28) and data.test.labels.shape == (10,)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataMissingError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path))


def test_mismatched_images_and_labels(tmp_path):
    _fake_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(IdxError, match="do not match"):
        load_fashion_mnist(str(tmp_path))
