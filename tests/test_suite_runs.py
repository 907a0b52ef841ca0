"""The suite end to end: bench CLI contract, kill-and-resume, store, export, compare."""

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import torch

from suite import store
from suite.cli import main
from suite.compare import compare, regressed
from suite.export import write

ROOT = Path(__file__).resolve().parents[1]
TINY = """
[[layer]]
name = "tiny.a"
out = 64
in = 128
tokens = [32]
tiers = ["quick"]

[[layer]]
name = "tiny.b"
out = 128
in = 64
tokens = [48]
tiers = ["quick"]
"""


def _bench(out, shapes, *extra):
    return [
        sys.executable,
        "-m",
        "suite",
        "bench",
        "--tier",
        "cpu",
        "--quick",
        "--no-progress",
        "--out",
        str(out),
        "--shapes",
        str(shapes),
        *extra,
    ]


def _row_lines(cache: Path) -> list[dict]:
    return [json.loads(line) for line in cache.read_text().splitlines()[1:] if line.strip()]


@pytest.fixture
def shapes(tmp_path):
    path = tmp_path / "shapes.toml"
    path.write_text(TINY)
    return path


def test_bench_quick_writes_results_sidecar_and_report(tmp_path, shapes):
    assert main(_bench(tmp_path / "run", shapes)[3:]) == 0
    df, meta = store.load(tmp_path / "run")
    assert set(store.REQUIRED) <= set(df.columns)
    assert meta["schema_version"] == store.SCHEMA_VERSION and meta["git_commit"]
    assert meta["device_before"]["kind"] == "cpu"
    assert (tmp_path / "run" / "report.md").read_text().startswith("# Sparse GEMM sweep")
    gemm = df[df.op.isin(["nm_gemm", "gemm"]) & (df.status == "ok")]
    assert (gemm.rel_error < 1e-4).all() and (gemm.tflops > 0).all()
    dense = gemm[gemm.backend == "torch_dense"]
    assert dense.groupby(["layer", "pass", "perm"]).speedup_vs_dense.max().eq(1.0).all()
    quality = df[df.op == "perm_search"]
    assert set(quality.perm) == {"identity", "greedy"} and quality.kept_frac.between(0, 1).all()


def test_killed_sweep_resumes_without_redoing_or_losing_anything(tmp_path, shapes):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    subprocess.run(_bench(full, shapes), env=env, check=True, capture_output=True, timeout=300)
    total = {r["hash"] for r in _row_lines(full / "cache.jsonl")}

    part = tmp_path / "part"
    proc = subprocess.Popen(
        _bench(part, shapes), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cache = part / "cache.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cache.exists() and len(cache.read_text().splitlines()) > 4:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    done_before = {r["hash"] for r in _row_lines(cache)}
    assert done_before, "the run died before finishing any measurement"
    assert len(done_before) < len(total), "the sweep finished before it could be killed"
    assert not (part / "results.csv").exists()

    subprocess.run(_bench(part, shapes), env=env, check=True, capture_output=True, timeout=300)
    lines = _row_lines(cache)
    hashes = [r["hash"] for r in lines]
    assert len(hashes) == len(set(hashes)), "a finished measurement was redone"
    assert set(hashes) == total, "rows were lost or invented"
    first_rows = {r["hash"]: r["row"] for r in lines if r["hash"] in done_before}
    resumed, _ = store.load(part)
    uninterrupted, _ = store.load(full)
    assert len(resumed) == len(uninterrupted)
    assert first_rows  # rows measured before the kill are reused as they were recorded


def test_cache_of_another_device_is_refused_by_the_cli(tmp_path, shapes, capsys):
    cache = tmp_path / "foreign.jsonl"
    cache.write_text(
        json.dumps({"type": "header", "schema": 1, "fingerprint": {"device": "NVIDIA H100"}}) + "\n"
    )
    rc = main(_bench(tmp_path / "r", shapes, "--cache", str(cache))[3:])
    assert rc == 2 and "recorded on" in capsys.readouterr().err


def _results(medians, iqrs):
    return pd.DataFrame(
        {
            "op": "nm_gemm",
            "layer": "l",
            "backend": "torch_dense",
            "pass": "fwd",
            "pattern": "2:4",
            "perm": "-",
            "m": [64 * (i + 1) for i in range(len(medians))],
            "n": 32,
            "k": 128,
            "dtype": "float32",
            "config": "{}",
            "status": "ok",
            "median_ms": medians,
            "iqr_ms": iqrs,
            "tflops": 1.0,
            "speedup_vs_dense": 1.0,
            "rel_error": 0.0,
            "device": "cpu",
        }
    )


def test_compare_flags_a_real_slowdown_and_ignores_noise(tmp_path):
    base = _results([10.0, 10.0, 10.0, 10.0], [0.2, 0.2, 4.0, 0.2])
    quiet = _results([10.3, 9.8, 11.0, 10.1], [0.2, 0.2, 4.0, 0.2])  # 3%, -2%, 10% in noise
    slow = _results([10.3, 12.0, 11.0, 10.1], [0.2, 0.2, 4.0, 0.2])  # row 2: +20%
    assert not regressed(compare(base, quiet))
    assert compare(base, quiet).verdict.tolist() == ["same", "same", "noise", "same"]
    table = compare(base, slow)
    assert regressed(table) and table.verdict.tolist()[1] == "slower"
    for name, df in (("base", base), ("quiet", quiet), ("slow", slow)):
        store.save(df, tmp_path / name, {})
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "quiet" / "results.csv")]) == 0
    per_row = ["--gate", "any", "--no-best-only", "--threshold", "0.05"]  # not the CPU defaults
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "slow"), *per_row]) == 1


def test_compare_counts_a_broken_config_as_a_regression():
    base = _results([10.0], [0.1])
    new = base.assign(status="wrong_answer", median_ms=float("nan"))
    assert regressed(compare(base, new))


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.cells = 0, []

    def handle_starttag(self, tag, attrs):
        self.rows += tag == "tr"

    def handle_data(self, data):
        if data.strip():
            self.cells.append(data.strip())


def test_exports_parse_back(tmp_path):
    df = _results([1.5, 2.25], [0.1, 0.2])
    back = pd.read_csv(write(df, tmp_path / "t.csv"))
    assert back.median_ms.tolist() == [1.5, 2.25] and list(back.columns) == list(df.columns)
    parser = _Cells()
    parser.feed(write(df, tmp_path / "t.html").read_text())
    assert parser.rows == 3 and "median_ms" in parser.cells and "2.25" in parser.cells
    tex = write(df, tmp_path / "t.tex").read_text()
    assert "\\begin{tabular}" in tex and tex.count("\\\\") >= 3 and "2.25" in tex
    md = write(df, tmp_path / "t.md").read_text().splitlines()
    assert md[0].startswith("| op") and len(md) == 4
    with pytest.raises(ValueError, match="cannot tell the format"):
        write(df, tmp_path / "t.xyz")


def test_join_two_runs_is_one_call():
    j = store.join(_results([1.0, 2.0], [0, 0]), _results([1.5, 2.5], [0, 0]))
    assert j.median_ms_base.tolist() == [1.0, 2.0] and j.median_ms_new.tolist() == [1.5, 2.5]


def test_shards_merge_into_one_run(tmp_path, shapes):
    assert main(_bench(tmp_path / "single", shapes)[3:]) == 0
    whole, _ = store.load(tmp_path / "single")
    cache = str(tmp_path / "single" / "cache.jsonl")  # replays the single run's timings
    for i in range(2):
        args = _bench(tmp_path / "sharded", shapes, "--shard", f"{i}/2", "--cache", cache)
        assert main(args[3:]) == 0
    assert main(["report", str(tmp_path / "sharded")]) == 0
    merged, meta = store.load(tmp_path / "sharded")
    assert len(merged) == len(whole) and meta["partial"] is False
    assert set(merged.columns) == set(whole.columns)
    key = ["op", "layer", "backend", "pass", "pattern", "perm", "m", "n", "k", "config"]
    a, b = (
        df.assign(_k=df[key].astype(str).agg("|".join, axis=1)).set_index("_k").sort_index()
        for df in (merged, whole)
    )
    assert a.index.tolist() == b.index.tolist()
    pd.testing.assert_series_equal(a.speedup_vs_dense, b.speedup_vs_dense)  # every backend's
    assert a.speedup_vs_dense.notna().sum() > 0
    assert {p.name for p in (tmp_path / "sharded").glob("*.png")} == {
        p.name for p in (tmp_path / "single").glob("*.png")
    }


def test_best_only_and_geomean_gate_tolerate_drift_but_not_a_broad_slowdown():
    from suite.compare import best_only, geomean_ratio

    base = _results([10.0, 20.0, 30.0, 40.0], [0.1] * 4)
    base = pd.concat([base, base.assign(config='{"x":1}', median_ms=base.median_ms * 1.5)])
    assert len(best_only(base)) == 4 and best_only(base).median_ms.tolist() == [10, 20, 30, 40]
    drift = base.assign(median_ms=base.median_ms * ([1.4, 0.8, 1.1, 0.9] * 2))  # up and down
    table = compare(best_only(base), best_only(drift), threshold=0.3)
    assert regressed(table)  # a per-row gate flags the 40% row
    assert not regressed(table, "geomean", 0.3) and geomean_ratio(table) < 1.1
    slow = base.assign(median_ms=base.median_ms * 1.6)  # everything 60% slower
    assert regressed(compare(best_only(base), best_only(slow)), "geomean", 0.3)


def test_baseline_is_the_per_row_median_of_runs(tmp_path):
    for i, factor in enumerate([1.0, 3.0, 2.0]):
        store.save(_results([10.0 * factor, 5.0 * factor], [0.1, 0.1]), tmp_path / f"r{i}", {})
    assert (
        main(["baseline", str(tmp_path / "b"), *(str(tmp_path / f"r{i}") for i in range(3))]) == 0
    )
    df, meta = store.load(tmp_path / "b")
    assert sorted(df.median_ms.tolist()) == [10.0, 20.0] and len(meta["baseline_of"]) == 3


def test_torchrun_mode_runs_one_shard_per_rank_and_merges(tmp_path, shapes):
    import shutil as sh

    torchrun = sh.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = tmp_path / "dist"
    # the same bench command line, launched by torchrun instead of the interpreter
    cmd = [torchrun, "--nproc_per_node=2", "--master_port=29533", *_bench(out, shapes)[1:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "shard-0" / "results.csv").is_file() and (
        out / "shard-1" / "results.csv"
    ).is_file()
    merged, meta = store.load(out)
    part0, _ = store.load(out / "shard-0")
    part1, _ = store.load(out / "shard-1")
    assert len(merged) == len(part0) + len(part1) and len(part0) and len(part1)
    assert (out / "report.md").is_file()


def test_bench_restricts_passes_and_permutations(tmp_path, shapes):
    args = _bench(tmp_path / "r", shapes, "--passes", "fwd", "--perms", "greedy")[3:]
    assert main([*args, "--space", "quick", "--budget-s", "0.02"]) == 0
    df, _ = store.load(tmp_path / "r")
    gemm = df[df.op.isin(["nm_gemm", "gemm"])]
    assert set(gemm["pass"]) == {"fwd"}
    assert set(df[df.op == "perm_search"].perm) == {"greedy"}


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own exit for a rejected value
        return e.code


def test_bench_names_an_unknown_permutation_strategy(tmp_path, shapes, capsys):
    assert _exit_code(_bench(tmp_path / "r", shapes, "--perms", "sideways")[3:]) == 2
    err = capsys.readouterr().err
    assert "--perms: invalid choice: 'sideways'" in err and "greedy" in err


def test_bench_names_unknown_and_unavailable_backends(tmp_path, shapes, capsys):
    assert _exit_code(_bench(tmp_path / "r", shapes, "--backends", "nosuch")[3:]) == 2
    err = capsys.readouterr().err
    assert "--backends: invalid choice: 'nosuch'" in err and "torch_dense" in err
    if not torch.cuda.is_available():
        assert _exit_code(_bench(tmp_path / "r", shapes, "--backends", "cublas")[3:]) == 2
        assert "none of the requested backends runs here" in capsys.readouterr().err
