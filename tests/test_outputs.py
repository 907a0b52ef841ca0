"""Nothing lost: atomic output files, output paths checked before any work, bimask.compare
writes where it is told and never replaces a file silently."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bimask import compare
from bimask.outputs import (
    OutputPathError,
    atomic_path,
    atomic_write_text,
    check_output_dir,
    check_output_file,
)

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = ROOT / "results" / "accuracy"


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    target = tmp_path / "r.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"], "a temporary file was left"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv"  # writers infer formats from it
        pd.DataFrame({"a": [1]}).to_csv(tmp, index=False)
    assert target.read_text() == "a\n1\n" and len(list(tmp_path.iterdir())) == 1
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_output_path_checks_name_the_problem_and_create_nothing(tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(OutputPathError, match="--out .*is a file, not a folder"):
        check_output_dir(a_file, "--out")
    with pytest.raises(OutputPathError, match="is a file, so no folder can be made"):
        check_output_dir(a_file / "sub" / "run", "--out")
    with pytest.raises(OutputPathError, match="--cache .*is a folder, not a file"):
        check_output_file(tmp_path, "--cache")
    with pytest.raises(OutputPathError, match="its folder .*does not exist"):
        check_output_file(tmp_path / "missing" / "best.tex", "--out")
    with pytest.raises(OutputPathError, match="exists and would be overwritten; pass --force"):
        check_output_file(a_file, "output", overwrite=False)
    assert check_output_dir(tmp_path / "new" / "run", "--out") == tmp_path / "new" / "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_dir(locked / "run", "--out")


@pytest.fixture
def accuracy_run(tmp_path, monkeypatch):
    """A copy of the committed accuracy run in its own folder; the cwd is an empty folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("cnn-quick-cpu.csv", "cnn-quick-cpu_curves.csv"):
        shutil.copy(ACCURACY / name, src / name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return src / "cnn-quick-cpu.csv"


def test_report_only_writes_beside_its_input_and_never_replaces_silently(accuracy_run, capsys):
    csv, folder = accuracy_run, accuracy_run.parent
    before = csv.read_bytes()
    assert compare.main(["--report-only", str(csv)]) == 0
    assert (folder / "cnn-quick-cpu.md").read_text().startswith("# Mask-method comparison")
    assert (folder / "cnn-quick-cpu.png").stat().st_size > 0
    assert not (Path.cwd() / "results").exists(), "wrote into ./results/accuracy"
    assert csv.read_bytes() == before, "the input CSV was rewritten"
    (folder / "cnn-quick-cpu.md").write_text("a committed report\n")
    capsys.readouterr()
    assert compare.main(["--report-only", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "cnn-quick-cpu.png, cnn-quick-cpu.md in" in err and "pass --force" in err
    assert (folder / "cnn-quick-cpu.md").read_text() == "a committed report\n"
    assert compare.main(["--report-only", str(csv), "--force"]) == 0
    assert (folder / "cnn-quick-cpu.md").read_text().startswith("# Mask-method comparison")
    other = folder.parent / "elsewhere"
    assert compare.main(["--report-only", str(csv), "--out", str(other)]) == 0
    assert sorted(p.name for p in other.iterdir()) == ["cnn-quick-cpu.md", "cnn-quick-cpu.png"]


def test_report_only_refuses_a_csv_that_is_not_a_compare_results_file(tmp_path, capsys):
    bad = tmp_path / "results.csv"
    bad.write_text("op,backend,median_ms\nnm_gemm,torch_dense,1.0\n")
    assert compare.main(["--report-only", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a bimask.compare results file" in err
    assert "method" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    with pytest.raises(SystemExit) as stop:  # argparse's type check (bimask.cli_args)
        compare.main(["--report-only", str(tmp_path)])
    assert stop.value.code == 2 and "is not a file" in capsys.readouterr().err


def test_compare_checks_its_outputs_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare, "run_grid", lambda *a: pytest.fail("trained before checking"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.csv").write_text("precious\n")
    assert compare.main(["--out", str(out), "--run", "r", "--work-dir", str(tmp_path / "w")]) == 2
    assert "r.csv in" in capsys.readouterr().err and (out / "r.csv").read_text() == "precious\n"
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert compare.main(["--out", str(a_file), "--run", "r"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_report_only_keeps_the_runs_command_and_notes(accuracy_run, tmp_path, capsys, monkeypatch):
    df, curves = pd.read_csv(accuracy_run), pd.read_csv(accuracy_run.with_name(
        "cnn-quick-cpu_curves.csv"))  # fmt: skip
    monkeypatch.setattr(compare, "run_grid", lambda *a: (df, curves))
    out = tmp_path / "run"
    argv = ["--profile", "standard", "--model", "cnn", "--out", str(out), "--run", "r",
            "--work-dir", str(tmp_path / "w")]  # fmt: skip
    assert compare.main(argv) == 0
    first = (out / "r.md").read_text()
    assert "Note: bimask-physical skipped" in first  # cnn has no Linear -> elementwise -> Linear
    assert "Note: dense top-1" in first and "## Why this profile" in first
    assert sorted(p.name for p in out.iterdir()) == [
        "r.csv", "r.md", "r.png", "r_curves.csv", "r_meta.json"]  # fmt: skip
    assert compare.main(["--report-only", str(out / "r.csv"), "--force"]) == 0
    again = (out / "r.md").read_text()
    assert "Note: bimask-physical skipped" in again and "Note: report rebuilt by" in again
    assert f"Command: `python -m bimask.compare {' '.join(argv)}`" in again
    kept = [line for line in again.splitlines() if not line.startswith("Note: report rebuilt")]
    assert kept == first.splitlines(), "the rebuilt report differs beyond its rebuild note"
    (out / "r_meta.json").write_text('{"command": 3}')
    capsys.readouterr()
    assert compare.main(["--report-only", str(out / "r.csv"), "--force"]) == 2
    err = capsys.readouterr().err
    assert "r_meta.json is not a bimask.compare meta file" in err and "Traceback" not in err
    assert (out / "r.md").read_text() == again, "a failed rebuild touched the report"


def test_report_only_of_a_run_without_meta_says_what_is_missing(accuracy_run, capsys):
    assert compare.main(["--report-only", str(accuracy_run)]) == 0
    text = accuracy_run.with_suffix(".md").read_text()
    assert "cnn-quick-cpu_meta.json is missing" in text
