"""bimask.train --profile-steps: the per-step breakdown, printed and kept in the history."""

import json

import pytest

from bimask.train.__main__ import main


def test_profile_steps_prints_and_stores_the_breakdown(tmp_path, capsys):
    argv = ["--dataset", "synthetic", "--model", "mlp", "--method", "bimask", "--epochs", "1",
            "--train-subset", "512", "--batch-size", "64", "--profile-steps", "3",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    line = next(x for x in captured.err.splitlines() if x.startswith("step profile"))
    assert "epoch 1 (3 steps, ms per step)" in line
    for part in ("masks", "permutation", "gemm_fwd", "gemm_dx", "gemm_dw", "optimizer", "other"):
        assert f"{part} " in line  # the first step of the run searches the permutation
    record = json.loads(captured.out.strip().splitlines()[-1])
    prof = record["step_profile_ms"]
    assert record["profiled_steps"] == 3
    assert sum(v for k, v in prof.items() if k != "step") == pytest.approx(prof["step"])
    assert all(v >= 0 for v in prof.values())
    history = json.loads((tmp_path / "summary.json").read_text())["history"]
    assert history[0]["step_profile_ms"] == prof


def test_without_profile_steps_nothing_is_profiled(tmp_path, capsys):
    argv = ["--dataset", "synthetic", "--model", "mlp", "--method", "dense", "--epochs", "1",
            "--train-subset", "256", "--batch-size", "64", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "step profile" not in captured.err
    assert "step_profile_ms" not in json.loads(captured.out.strip().splitlines()[-1])


def test_a_negative_profile_steps_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--profile-steps", "-1", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and "--profile-steps" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
