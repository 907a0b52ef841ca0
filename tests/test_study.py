"""bimask.compare's grid is resumable: finished cells are kept and skipped on a re-run."""

import json

import pandas as pd
import pytest

from bimask import compare, study

ARGS = ["--dataset", "synthetic", "--model", "mlp", "--methods", "bimask-greedy",
        "--patterns", "2:4", "--seeds", "1", "--epochs", "1", "--run", "t"]  # fmt: skip


def _args(tmp_path, out="acc"):
    return ARGS + ["--out", str(tmp_path / out), "--work-dir", str(tmp_path / "work")]


def test_a_rerun_skips_done_cells_and_trains_only_the_missing_one(tmp_path, monkeypatch):
    assert compare.main(_args(tmp_path)) == 0
    cells = sorted((tmp_path / "work" / "t" / "cells").glob("*.json"))
    assert [c.name for c in cells] == ["bimask-greedy-2x4-s0.json", "dense---s0.json"]
    first = pd.read_csv(tmp_path / "acc" / "t.csv")
    assert list(first.variant) == ["dense", "bimask-greedy"]
    cells[0].unlink()  # as if the run was killed while training this cell
    trained, real = [], study.train
    monkeypatch.setattr(study, "train", lambda cfg: trained.append(cfg) or real(cfg))
    assert compare.main(_args(tmp_path, "again")) == 0
    assert [(c.method, c.permutation, c.seed) for c in trained] == [("bimask", "greedy", 0)]
    again = pd.read_csv(tmp_path / "again" / "t.csv")
    keep = ["variant", "pattern", "seed", "final_test_top1"]
    pd.testing.assert_frame_equal(first[keep], again[keep])  # deterministic on CPU


def test_a_cell_of_other_settings_is_an_error_before_training(tmp_path, monkeypatch, capsys):
    cells = tmp_path / "work" / "t" / "cells"
    cells.mkdir(parents=True)
    args = compare.parser().parse_args(_args(tmp_path))
    compare.resolve(args)
    cell = study.plan(args, tmp_path / "work" / "t")[0]
    record = {"config": study._key(cell.config) | {"epochs": 5}, "row": {}, "history": []}
    (cells / f"{cell.name}.json").write_text(json.dumps(record))
    monkeypatch.setattr(study, "train", lambda cfg: pytest.fail("trained before checking"))
    assert compare.main(_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "other settings (epochs)" in err
    assert not (tmp_path / "acc" / "t.csv").exists()


def test_standard_profile_defaults(monkeypatch):
    args = compare.parser().parse_args(["--profile", "standard"])
    compare.resolve(args)
    assert args.model == "cnn_small" and args.patterns == ["2:4"] and args.seeds == 7
    assert args.run == f"cnn_small-standard-{compare.machine_slug()}"
    assert args.out == f"results/accuracy/{args.run}"
    assert args.variants[:4] == ["srste", "tmask", "bimask-random", "bimask-greedy"]
    # cnn_small has no Linear -> elementwise -> Linear pair: the default set drops physical and
    # says why (asked for by name on such a model it is an error, tests/test_physical_train.py)
    assert "bimask-physical" not in args.variants
    assert any("bimask-physical skipped" in n and "not a Linear" in n for n in args.notes)
    args = compare.parser().parse_args(["--profile", "standard", "--seeds", "3"])
    compare.resolve(args)
    assert args.seeds == 3
    with pytest.raises(ValueError, match="contradict"):
        compare.resolve(compare.parser().parse_args(["--quick", "--profile", "standard"]))


def test_physical_variant_is_skipped_with_a_note_where_missing(monkeypatch):
    monkeypatch.setattr(study, "physical_available", lambda: False)
    keep, notes = study.variants_to_run(["tmask", "bimask-physical"])
    assert keep == ["tmask"] and "no perm_realisation option" in notes[0]
