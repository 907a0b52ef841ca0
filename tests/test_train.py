import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bimask.train.__main__ import main
from bimask.train.config import TrainConfig
from bimask.train.loop import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method", ["dense", "srste", "tmask", "bimask"])
def test_one_epoch_lowers_the_loss(method, tmp_path):
    cfg = TrainConfig(
        model="mlp",
        dataset="synthetic",
        method=method,
        epochs=1,
        batch_size=64,
        device="cpu",
        out=str(tmp_path),
    )
    s = train(cfg)
    assert s["final_train_loss"] < math.log(10) - 0.3  # chance level is ln(10) = 2.30
    assert s["final_test_top1"] > 0.3
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "model",
        "dataset",
        "method",
        "pattern",
        "permutation",
        "epochs",
        "seed",
        "final_test_top1",
        "best_test_top1",
        "train_time_s",
        "mask_overhead_frac",
    ):
        assert key in on_disk
    if method == "bimask":
        assert 0 < s["bwd_kept_frac"] < 1 and s["grad_gap"] > 0
    if method in ("srste", "tmask"):
        assert s["grad_gap"] == 0.0


def test_cli_contract_runs(tmp_path):
    rc = main(
        [
            "--dataset",
            "synthetic",
            "--model",
            "mlp",
            "--method",
            "bimask",
            "--pattern",
            "2:4",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0 and (tmp_path / "summary.json").is_file()


def test_resume_is_bit_exact(tmp_path):
    base = dict(
        model="mlp",
        dataset="synthetic",
        method="bimask",
        permutation="random",
        candidates=4,
        perm_every=5,
        epochs=3,
        batch_size=64,
        device="cpu",
    )
    full = train(TrainConfig(**base, out=str(tmp_path / "a")))
    train(TrainConfig(**base, out=str(tmp_path / "b"), stop_after=1))
    resumed = train(TrainConfig(**base, out=str(tmp_path / "b"), resume=True))
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["train_loss"] for h in full["history"]] == [
        h["train_loss"] for h in resumed["history"]
    ]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--method", "magic"], "invalid choice"),
        (["--pattern", "5:4"], "1 <= N < M"),
        (["--pattern", "1:48", "--model", "mlp"], "fits no layer"),  # 784 and 256 % 48 != 0
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "apt-get install"),
        (["--epochs", "0"], "--epochs: must be an integer >= 1"),
    ],
)
def test_bad_options_give_clear_errors(argv, needle, tmp_path, capsys):
    defaults = {"--dataset": "synthetic", "--epochs": "1", "--out": str(tmp_path)}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = argv + [flag, value]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse rejects unknown choices itself
        rc = e.code
    assert rc == 2
    assert needle in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node=2",
            "--master_port=29517",
            str(ROOT / "tests/ddp_worker.py"),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    perm_keys = [k for k in r0 if k.endswith(".perm")]
    assert perm_keys and any(not torch.equal(r0[k], torch.arange(len(r0[k]))) for k in perm_keys)
    for k in r0:  # weights, masks, permutations, step counters
        assert torch.equal(r0[k], r1[k]), k
    assert (tmp_path / "summary.json").is_file()


def test_compare_grid_writes_csv_report_plot_and_curves(tmp_path):
    from bimask.compare import main as compare_main

    rc = compare_main(
        [
            "--dataset",
            "synthetic",
            "--model",
            "mlp",
            "--methods",
            "bimask",
            "tmask",
            "--patterns",
            "2:4",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "acc"),
            "--work-dir",
            str(tmp_path / "work"),
            "--run",
            "t",
        ]
    )
    assert rc == 0
    import pandas as pd

    df = pd.read_csv(tmp_path / "acc" / "t.csv")
    for col in (
        "model",
        "dataset",
        "method",
        "pattern",
        "permutation",
        "seed",
        "epochs",
        "final_test_top1",
        "mask_overhead_frac",
        "device",
    ):
        assert col in df
    assert sorted(df.method.unique()) == ["bimask", "dense", "tmask"] and len(df) == 6
    report = (tmp_path / "acc" / "t.md").read_text()
    # the claims are decided from paired seed differences with their interval (bimask.claims)
    assert "Bi-Mask at least as accurate as transposable masks at 2:4" in report
    assert "95% CI" in report and "Paired differences" in report
    assert (tmp_path / "acc" / "t.png").stat().st_size > 1000
    curves = pd.read_csv(tmp_path / "acc" / "t_curves.csv")
    assert {"method", "epoch", "train_loss", "test_top1"} <= set(curves.columns)
