"""perm_realisation="physical" in bimask.train and bimask.compare: runs, resumes exactly,
refuses what it cannot do before any file is written."""

import pytest
import torch

from bimask import physical
from bimask.train.__main__ import main
from bimask.train.config import TrainConfig
from bimask.train.loop import train

BASE = dict(
    model="mlp",
    dataset="synthetic",
    method="bimask",
    permutation="random",
    candidates=4,
    perm_every=3,
    epochs=2,
    batch_size=64,
    train_subset=256,  # 4 steps an epoch
    test_subset=128,
    device="cpu",
    perm_realisation="physical",
)


def test_a_physical_run_reorders_and_resumes_exactly(tmp_path, monkeypatch):
    reorders = []
    real = physical.reorder_pair

    def counting(producer, consumer, pi, optimizer=None):
        reorders.append(not torch.equal(pi, torch.arange(len(pi))))
        assert optimizer is not None  # the loop hands its optimizer over
        return real(producer, consumer, pi, optimizer)

    monkeypatch.setattr(physical, "reorder_pair", counting)
    full = train(TrainConfig(**BASE, out=str(tmp_path / "a")))
    assert len(reorders) == 2 * 3  # steps 0, 3, 6 of 8; 2 layers
    assert any(reorders)  # pi was not the identity: rows really moved
    assert full["perm_realisation"] == "physical" and full["final_train_loss"] < 2.3
    assert "pi physical" in full["layers"][0]["reason"]
    train(TrainConfig(**BASE, out=str(tmp_path / "b"), stop_after=1))
    resumed = train(TrainConfig(**BASE, out=str(tmp_path / "b"), resume=True))
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["model"]["1.perm"], torch.arange(256))  # pi realised away
    assert [h["train_loss"] for h in full["history"]] == [
        h["train_loss"] for h in resumed["history"]
    ]


def test_resume_with_another_realisation_is_refused(tmp_path, capsys):
    out = str(tmp_path / "r")
    train(TrainConfig(**{**BASE, "epochs": 1, "train_subset": 64}, out=out))
    argv = ["--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--out", out]
    argv += ["--permutation", "random", "--candidates", "4", "--perm-every", "3"]
    argv += ["--batch-size", "64", "--train-subset", "64", "--test-subset", "128"]
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "perm_realisation: checkpoint 'physical', now 'gather'" in err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--model", "cnn"], "fits no sparse layer"),
        (["--method", "tmask"], "--method tmask has none"),
        (["--perm-realisation", "sideways"], "invalid choice"),
    ],
)
def test_bad_physical_options_are_one_error_line_before_any_file(argv, needle, tmp_path, capsys):
    out = tmp_path / "never"
    args = ["--dataset", "synthetic", "--epochs", "1", "--out", str(out)]
    if "--perm-realisation" not in argv:
        args += ["--perm-realisation", "physical"]
    try:
        rc = main(args + argv)
    except SystemExit as e:  # argparse refuses unknown choices itself
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_compare_refuses_physical_on_a_model_without_pairs_before_training(tmp_path, capsys):
    from bimask.compare import main as compare_main

    argv = ["--dataset", "synthetic", "--model", "cnn", "--methods", "bimask-physical"]
    argv += ["--patterns", "2:4", "--seeds", "1", "--epochs", "1"]
    argv += ["--out", str(tmp_path / "acc"), "--work-dir", str(tmp_path / "w")]
    assert compare_main(argv) == 2
    err = capsys.readouterr().err
    assert "bimask-physical" in err and "fits no sparse layer" in err
    assert not (tmp_path / "w").exists() and not (tmp_path / "acc").exists()


def test_compare_runs_bimask_physical_as_its_own_method_row(tmp_path, monkeypatch):
    """The grid trains bimask-physical as bimask with perm_realisation="physical" and reports
    it beside bimask, with the measured difference (train replaced: the grid's wiring only)."""
    from bimask import compare, study

    seen = []

    def fake_train(cfg):
        seen.append((cfg.method, cfg.perm_realisation))
        top1 = {"gather": 0.9, "physical": 0.8}[cfg.perm_realisation] + 0.01 * cfg.seed
        return {
            **{k: getattr(cfg, k, None) for k in study.COLUMNS if hasattr(cfg, k)},
            "final_test_top1": top1, "best_test_top1": top1, "mask_overhead_frac": 0.1,
            "bwd_kept_frac": 0.8, "grad_gap": 0.1, "train_time_s": 1.0, "device": "cpu",
            "history": [{"epoch": 1, "train_loss": 1.0, "test_top1": top1}],
        }  # fmt: skip

    monkeypatch.setattr(study, "train", fake_train)
    argv = ["--dataset", "synthetic", "--model", "mlp", "--methods", "bimask", "bimask-physical"]
    argv += ["--patterns", "2:4", "--seeds", "2", "--epochs", "1", "--run", "t"]
    argv += ["--out", str(tmp_path / "acc"), "--work-dir", str(tmp_path / "w")]
    assert compare.main(argv) == 0
    assert ("bimask", "physical") in seen and ("bimask", "gather") in seen
    report = (tmp_path / "acc" / "t.md").read_text()
    assert "| 2:4       | bimask-physical |" in report
    # its measured cost against the gathered permutation: a paired difference of the report
    assert "| 2:4       | bimask-physical | bimask | -10.00 |" in report


@pytest.mark.slow
def test_ddp_ranks_reorder_alike(tmp_path):
    """Under DDP (gloo, two CPU processes) the physical reorder keeps the ranks identical."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    worker = [str(root / "tests/ddp_worker.py"), str(tmp_path), "physical"]
    proc = subprocess.run(
        [torchrun, "--nproc_per_node=2", "--master_port=29531", *worker],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in r0:  # weights, masks, step counters; pi realised away on both
        assert torch.equal(r0[k], r1[k]), k
    assert torch.equal(r0["1.perm"], torch.arange(256)) and torch.equal(r0["3.perm"], r1["3.perm"])


def test_a_checkpoint_from_before_the_option_resumes_as_gather(tmp_path):
    cfg = {**BASE, "perm_realisation": "gather", "train_subset": 64, "epochs": 2}
    out = tmp_path / "old"
    train(TrainConfig(**cfg, out=str(out), stop_after=1))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["config"]["perm_realisation"]  # as an older version wrote it
    torch.save(state, out / "checkpoint.pt")
    resumed = train(TrainConfig(**cfg, out=str(out), resume=True))
    assert len(resumed["history"]) == 2
    with pytest.raises(ValueError, match="perm_realisation: checkpoint 'gather', now 'physical'"):
        train(TrainConfig(**{**cfg, "perm_realisation": "physical"}, out=str(out), resume=True))
