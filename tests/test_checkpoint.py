"""Checkpoints are data: a crafted file runs nothing, and every bad file is one clear error."""

import pytest
import torch

from bimask.train.__main__ import main
from bimask.train.checkpoint import KIND, SCHEMA, CheckpointError, read_checkpoint

FAST = ["--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--batch-size", "64"]


class _Payload:
    """Unpickling this calls open(marker, 'w'): it creates a file if the loader runs it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main([*FAST, "--out", str(out)]) == 0
    return out


def _resume(out, capsys, *extra):
    rng = torch.get_rng_state()
    rc = main([*FAST, "--out", str(out), "--resume", *extra])
    assert torch.equal(torch.get_rng_state(), rng), "the RNG was touched before the error"
    return rc, capsys.readouterr().err


def test_a_crafted_checkpoint_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    state = {"kind": KIND, "schema": SCHEMA, "model": {"w": _Payload(marker)}}
    torch.save(state, tmp_path / "checkpoint.pt")
    rc, err = _resume(tmp_path, capsys)
    assert rc == 2 and not marker.exists()
    assert "could run code" in err and "checkpoint.pt" in err
    assert "Traceback" not in err


def test_a_truncated_checkpoint_is_a_clear_error(trained, tmp_path, capsys):
    data = (trained / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    rc, err = _resume(tmp_path, capsys)
    assert rc == 2 and "truncated or damaged" in err


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"just some text\n", "not a"),
        (None, "not a bimask-suite training checkpoint"),  # a torch file of someone else's
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path, capsys, content, needle):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save({"weights": torch.ones(3)}, path)
    else:
        path.write_bytes(content)
    rc, err = _resume(tmp_path, capsys)
    assert rc == 2 and needle in err


def test_other_schema_and_missing_fields_are_named(trained, tmp_path):
    state = torch.load(trained / "checkpoint.pt", weights_only=True)
    torch.save({**state, "schema": 99}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="schema 99"):
        read_checkpoint(tmp_path / "a.pt")
    torch.save({k: v for k, v in state.items() if k != "torch_rng"}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="'torch_rng' is missing"):
        read_checkpoint(tmp_path / "b.pt")
    legacy = {k: v for k, v in state.items() if k not in ("kind", "schema")}
    torch.save(legacy, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="older version"):
        read_checkpoint(tmp_path / "c.pt")


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path, capsys):
    rc, err = _resume(tmp_path / "empty", capsys)
    assert rc == 2 and "no checkpoint at" in err
    assert not (tmp_path / "empty").exists()


def test_resume_with_other_options_names_the_differences(trained, capsys):
    rc, err = _resume(trained, capsys, "--method", "srste", "--pattern", "1:4")
    assert rc == 2
    assert "method: checkpoint 'bimask', now 'srste'" in err
    assert "pattern: checkpoint '2:4', now '1:4'" in err


def test_a_checkpoint_holds_only_plain_data(trained):
    state = torch.load(trained / "checkpoint.pt", weights_only=True)  # raises on any object
    assert state["kind"] == KIND and state["schema"] == SCHEMA
    assert isinstance(state["config"], dict) and state["config"]["method"] == "bimask"
