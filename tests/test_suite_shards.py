"""Nothing lost in the store: shard merges check every shard and redo themselves when a shard
changes; speed-ups come from the merged rows; unknown schemas and broken sidecars are errors;
a run records the commit and, separately, whether the tree was dirty."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from suite import shards, store
from suite.cli import main


def _rows(backend: str, median_ms: float, baseline: bool, m: int = 64) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "op": "nm_gemm",
            "layer": "l",
            "backend": backend,
            "pass": "fwd",
            "pattern": "2:4",
            "perm": "-",
            "m": [m],
            "n": 32,
            "k": 128,
            "dtype": "float32",
            "config": "{}",
            "status": "ok",
            "median_ms": median_ms,
            "iqr_ms": 0.01,
            "tflops": 1.0,
            "speedup_vs_dense": float("nan"),  # a shard without the baseline cannot know it
            "rel_error": 0.0,
            "device": "cpu",
            "sparse_path": backend != "torch_dense",
            "baseline": baseline,
        }
    )


SPARSE = _rows("torch_masked", 2.0, False)  # shard 0: the sparse backend only
DENSE = _rows("torch_dense", 4.0, True)  # shard 1: the dense baseline only


def _shard(run, i, n, df):
    store.save(df, run / f"shard-{i}", {"shard": [i, n], "tier": "cpu", "device_before": {}})


def test_a_missing_shard_is_named_and_refused_then_merged_when_it_arrives(tmp_path, capsys):
    run = tmp_path / "run"
    _shard(run, 0, 2, SPARSE)
    (run / "shard-1").mkdir()
    (run / "shard-1" / "cache.jsonl").write_text("{}\n")  # started, never finished
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "shard(s) 1/2 missing" in err and "--partial" in err
    assert not (run / "results.csv").exists() and not (run / "report.md").exists()

    assert main(["report", str(run), "--partial"]) == 0
    df, meta = store.load(run)
    assert meta["partial"] is True and meta["missing_shards"] == ["1/2"]
    head = (run / "report.md").read_text().splitlines()[:3]
    assert "PARTIAL" in head[0] and "1 of 2 shards missing (1/2)" in head[2]

    _shard(run, 1, 2, DENSE)  # the late shard
    assert main(["report", str(run)]) == 0
    df, meta = store.load(run)
    assert sorted(df.backend) == ["torch_dense", "torch_masked"] and meta["partial"] is False
    assert "PARTIAL" not in (run / "report.md").read_text()
    sparse = df[df.backend == "torch_masked"].iloc[0]
    assert sparse.speedup_vs_dense == pytest.approx(2.0), "speed-up computed per shard"

    _shard(run, 1, 2, _rows("torch_dense", 8.0, True))  # a shard rerun after the merge
    assert main(["report", str(run)]) == 0
    df, _ = store.load(run)
    assert df[df.backend == "torch_masked"].speedup_vs_dense.iloc[0] == pytest.approx(4.0)


def test_merged_shards_equal_the_single_process_run(tmp_path):
    single = store.add_speedups(pd.concat([SPARSE, DENSE], ignore_index=True))
    store.save(single, tmp_path / "single", {})
    _shard(tmp_path / "run", 0, 2, SPARSE)
    _shard(tmp_path / "run", 1, 2, DENSE)
    assert shards.merge_shards(tmp_path / "run") is True
    assert shards.merge_shards(tmp_path / "run") is False  # unchanged shards: nothing to redo
    merged, _ = store.load(tmp_path / "run")
    whole, _ = store.load(tmp_path / "single")
    assert set(merged.columns) == set(whole.columns)
    key = ["backend", "m"]
    pd.testing.assert_series_equal(
        merged.sort_values(key).speedup_vs_dense.reset_index(drop=True),
        whole.sort_values(key).speedup_vs_dense.reset_index(drop=True),
    )


def test_shards_of_different_splits_are_refused(tmp_path):
    _shard(tmp_path, 0, 2, SPARSE)
    _shard(tmp_path, 1, 3, DENSE)
    with pytest.raises(ValueError, match="different splits"):
        shards.merge_shards(tmp_path)


def test_unknown_schema_and_broken_sidecar_are_clear_errors(tmp_path, capsys):
    csv = store.save(SPARSE.copy(), tmp_path / "a", {})
    csv.write_text(csv.read_text().replace(",1,", ",99,"))  # the schema_version column
    with pytest.raises(ValueError, match="schema_version 99"):
        store.load(tmp_path / "a")
    csv = store.save(SPARSE.copy(), tmp_path / "b", {})
    js = csv.with_suffix(".json")
    js.write_text(js.read_text().replace('"schema_version": 1', '"schema_version": 7'))
    with pytest.raises(ValueError, match="schema_version 7"):
        store.load(tmp_path / "b")
    js.write_text("{not json")
    assert main(["report", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "results.json is not valid JSON" in err and "Traceback" not in err


def test_a_run_records_the_commit_and_dirtiness_apart(tmp_path):
    csv = store.save(SPARSE.copy(), tmp_path, {})
    meta = json.loads(csv.with_suffix(".json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", meta["git_commit"])
    assert meta["git_dirty"] in (True, False, None)
    assert not pd.read_csv(csv).git_commit.str.contains("dirty").any()


def test_save_leaves_the_old_results_when_writing_fails(tmp_path, monkeypatch):
    csv = store.save(SPARSE.copy(), tmp_path, {})
    before = csv.read_bytes()

    def broken(self, path, **kw):
        Path(path).write_text("op,backend\nhalf")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save(DENSE.copy(), tmp_path, {})
    assert csv.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json"]
