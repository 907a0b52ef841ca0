"""suite bench and make bench: arguments and output paths checked before any file is touched,
resume by default, start afresh only when asked (and then the old cache is moved, not lost),
and the committed reference results are never a bench output."""

import shutil
import subprocess
from pathlib import Path

import pytest

from suite.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = """
[[layer]]
name = "tiny.a"
out = 64
in = 128
tokens = [32]
tiers = ["quick"]
"""


def _args(out, shapes, *extra):
    return [
        "bench",
        "--tier",
        "cpu",
        "--quick",
        "--no-progress",
        "--out",
        str(out),
        "--shapes",
        str(shapes),
        "--passes",
        "fwd",
        "--perms",
        "identity",
        "--backends",
        "torch_dense",
        "--space",
        "quick",
        "--budget-s",
        "0.02",
        *extra,
    ]


@pytest.fixture
def shapes(tmp_path):
    path = tmp_path / "shapes.toml"
    path.write_text(TINY)
    return path


def _rc(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse and early validation exit this way
        return stop.code if isinstance(stop.code, int) else 2


def test_bad_output_paths_are_refused_before_anything_is_written(tmp_path, shapes, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("keep")
    assert main(_args(a_file, shapes)) == 2
    assert "--out" in capsys.readouterr().err and a_file.read_text() == "keep"
    assert main(_args(tmp_path / "run", shapes, "--cache", str(tmp_path))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cache") and "is a folder, not a file" in err
    assert not (tmp_path / "run").exists()
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "no" / "x.md")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fresh_moves_the_old_cache_aside_only_after_validation(tmp_path, shapes, capsys):
    run = tmp_path / "run"
    assert main(_args(run, shapes)) == 0
    cache = run / "cache.jsonl"
    finished = cache.read_bytes()
    assert _rc(_args(run, shapes, "--fresh", "--perms", "sideways")) != 0  # a typo
    assert cache.read_bytes() == finished and not list(run.glob("cache.jsonl.old-*"))
    assert main(_args(run, shapes)) == 0  # resume by default: everything from the cache
    assert cache.read_bytes() == finished
    assert main(_args(run, shapes, "--fresh")) == 0
    (aside,) = run.glob("cache.jsonl.old-*")
    assert aside.read_bytes() == finished and cache.read_bytes() != finished
    assert "moved the old cache" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_bench_resumes_writes_to_runs_and_starts_afresh_only_when_asked():
    def recipe(*extra):
        cmd = ["make", "-n", "-s", "bench", "PY=python", "TIER=cpu", *extra]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout

    plain, fresh = recipe(), recipe("FRESH=1")
    assert "rm " not in plain and "--fresh" not in plain
    assert "--out runs/bench/cpu" in plain and "runs/bench/pytest-benchmark-cpu.json" in plain
    assert "--fresh" in fresh
    tracked = subprocess.run(
        ["git", "ls-files", "runs"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert tracked == "" and (ROOT / "results/reference/bench/cpu/results.csv").is_file()
