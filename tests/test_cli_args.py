"""The shared argument types, and the checks outside argparse that use the same rules."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from bimask import cli_args as ca
from bimask import sparsify
from bimask.data import load_fashion_mnist
from bimask.data.idx import IdxError, write_idx
from bimask.train.config import TrainConfig


@pytest.mark.parametrize(
    "kind,good,bad",
    [
        (ca.positive_int, {"1": 1, " 7 ": 7}, ["0", "-3", "1.5", "abc", ""]),
        (ca.nonneg_int, {"0": 0, "3": 3}, ["-1", "x"]),
        (ca.positive_float, {"0.5": 0.5, "2": 2.0}, ["0", "-1", "nan", "inf", "x"]),
        (ca.nonneg_float, {"0": 0.0, "1e-4": 1e-4}, ["-0.1", "nan"]),
        (ca.unit_fraction, {"0": 0.0, "0.1": 0.1}, ["1", "-0.1", "1.5"]),
        (ca.pattern, {"2:4": "2:4", " 1:16 ": "1:16"}, ["3:2", "2-4", "0:4", "4:4", "a:b"]),
        (ca.pattern_or_dense, {"dense": "dense", "2:8": "2:8"}, ["sparse", "2:2"]),
        (ca.shard, {"0/4": (0, 4), "3/4": (3, 4)}, ["5/4", "4/4", "a/b", "-1/4", "1/0", "1"]),
        (ca.device, {"cpu": "cpu", "cuda:1": "cuda:1"}, ["gpu", "cuda:x", "cuda:-1"]),
    ],
)
def test_argument_types_accept_the_rule_and_reject_the_rest(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace("'", ".")):
            kind(text)


def test_check_applies_a_type_outside_argparse():
    assert ca.check(3, ca.positive_int, "--x") == 3
    with pytest.raises(ca.UsageError, match=r"--x: must be an integer >= 1, got '0'"):
        ca.check(0, ca.positive_int, "--x")
    with pytest.raises(ca.UsageError, match=r"--name: unknown value 'b'; choose one of \['a'\]"):
        ca.one_of("b", ["a"], "--name")


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("lr", 0.0, "--lr: must be a number > 0"),  # was silently replaced by 0.1
        ("lr", -1e-3, "--lr: must be a number > 0"),
        ("weight_decay", -1.0, "--weight-decay: must be a number >= 0"),
        ("label_smoothing", 1.0, r"--label-smoothing: must be a number in \[0, 1\)"),
        ("train_subset", 0, "--train-subset: must be an integer >= 1"),
        ("batch_size", -1, "--batch-size: must be an integer >= 1"),
        ("epochs", 0, "--epochs: must be an integer >= 1"),
        ("epochs", 1.5, "--epochs: must be an integer"),
        ("warmup_epochs", -1.0, "--warmup-epochs: must be a number >= 0"),
        ("warmup_epochs", 11.0, "longer than --epochs 10"),
        ("stop_after", 0, "--stop-after: must be an integer >= 1"),
        ("perm_every", 0, "--perm-every: must be an integer >= 1"),
        ("candidates", 0, "--candidates: must be an integer >= 1"),
        ("method", "magic", r"--method: unknown value 'magic'; choose one of \["),
        ("pattern", "2-4", "--pattern: N:M pattern '2-4' must look like"),
        ("device", "gpu", "--device: must be auto, cpu, cuda or cuda:N"),
    ],
)
def test_train_config_rejects_bad_values_from_the_python_api_too(field, value, needle):
    with pytest.raises(ca.UsageError, match=needle):
        TrainConfig(**{field: value})


def test_train_config_sizes_must_fit_the_data():
    TrainConfig(train_subset=100, batch_size=100).check_sizes(2048, 512)
    with pytest.raises(ValueError, match="--train-subset 3000 is larger than .* \\(2048 images"):
        TrainConfig(train_subset=3000).check_sizes(2048, 512)
    with pytest.raises(ValueError, match="--test-subset 600 is larger"):
        TrainConfig(test_subset=600).check_sizes(2048, 512)
    with pytest.raises(ValueError, match="--batch-size 128 is larger than the 64 training images"):
        TrainConfig(train_subset=128).check_sizes(2048, 512, world_size=2)


def test_idx_labels_outside_0_to_9_name_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 9, 12, 3], np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2], np.uint8))
    with pytest.raises(IdxError, match=r"train-labels-idx1-ubyte: 1 label\(s\) outside 0\.\.9"):
        load_fashion_mnist(str(tmp_path))


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"pattern": "1:4"}, "pattern '2:4' -> '1:4'"),
        ({"method": "srste"}, "method 'bimask' -> 'srste'"),
        ({"permutation": "random"}, "permutation 'greedy' -> 'random'"),
    ],
)
def test_sparsify_twice_with_other_settings_is_an_error(change, needle):
    model = _mlp()
    first = dict(pattern="2:4", method="bimask", permutation="greedy")
    sparsify(model, **first)
    before = {n: type(m) for n, m in model.named_modules()}
    with pytest.raises(ValueError, match=f"layer '0' is already sparse .*{needle}"):
        sparsify(model, **(first | change))
    assert {n: type(m) for n, m in model.named_modules()} == before  # left as it was
    assert str(model[0].pattern) == "2:4" and model[0].method == "bimask"


def test_sparsify_twice_with_the_same_settings_is_a_no_op():
    model = _mlp()
    sparsify(model, "2:4", "bimask", "greedy")
    layer = model[0]
    again = sparsify(model, "2:4", "bimask", "greedy")
    assert model[0] is layer and again[0].sparse and "already sparse" in again[0].reason


def test_a_cuda_device_index_must_exist(monkeypatch):
    from bimask.train.loop import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"--device cuda:7: this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:7")
