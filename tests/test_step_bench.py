"""The measured training step (suite step): rows, breakdown, speed-ups, projection, CLI."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from bimask.backends import BACKENDS, TorchLinearOps
from suite import step_report
from suite.cli import main
from suite.step_bench import PARTS, StepSpec, run_step_bench
from suite.step_shapes import Block, load_blocks
from suite.step_view import step_view

TINY = Block("tiny", 16, 32, 8)
TOML = '[[block]]\nname = "tiny"\nd_model = 16\nd_hidden = 32\ntokens = 8\n'


def _spec(**kw):
    base = dict(blocks=(TINY,), patterns=("2:4",), methods=("dense", "srste", "tmask", "bimask"),
                backends=("torch",), budget_s=0.05, min_reps=3, warmup=1)  # fmt: skip
    return StepSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def rows():
    return pd.DataFrame(run_step_bench(_spec()))


def test_every_row_is_measured_and_its_parts_add_up_to_the_step(rows):
    assert set(rows.method) == {"dense", "srste", "tmask", "bimask"}
    assert (rows.status == "ok").all(), rows.reason.tolist()
    for _, r in rows.iterrows():
        parts = sum(r[f"{p}_ms"] for p in PARTS)
        assert parts == pytest.approx(r.step_ms, rel=1e-9, abs=1e-9)
        assert r.step_ms == pytest.approx(r.measured_ms + r.permutation_ms + r.mask_refresh_ms)
        assert all(r[f"{p}_ms"] >= 0 for p in PARTS if p != "other")
        assert r.gemm_fwd_ms > 0 and r.gemm_dx_ms > 0 and r.gemm_dw_ms > 0  # dense too
    by = rows[rows.realisation != "physical"].set_index("method")  # physical: its own test
    assert by.loc["dense", "masks_ms"] == 0 and by.loc["bimask", "masks_ms"] > 0
    assert by.loc["bimask", "permutation_ms"] > 0  # the search, amortised
    assert by.loc["tmask", "mask_refresh_ms"] > 0  # its transposable mask, rebuilt on refresh
    assert by.loc["srste", "permutation_ms"] == 0


def test_the_speedup_is_the_fastest_dense_step_of_the_run_over_the_row(rows):
    df = step_report.add_speedups(rows)
    dense = df[df.method == "dense"].step_ms.min()
    assert (df.dense_ms == dense).all() and (df.dense_ref == "dense on torch").all()
    for _, r in df.iterrows():
        assert r.speedup == pytest.approx(dense / r.step_ms)
        assert r.speedup_lo <= r.speedup <= r.speedup_hi


def test_speedups_pick_the_fastest_dense_backend_and_skip_failures():
    def row(backend, method, ms, status="ok"):
        return {"block": "b", "backend": backend, "method": method, "status": status,
                "step_ms": ms, "iqr_ms": 0.0, "min_ms": ms}  # fmt: skip

    rows = [row("torch", "dense", 10.0), row("kernels", "dense", 8.0)]
    rows += [row("kernels", "bimask", 5.0), row("x", "bimask", math.nan, "error")]
    df = pd.DataFrame(rows)
    out = step_report.add_speedups(df).set_index(["backend", "method"])
    assert out.loc[("kernels", "bimask"), "speedup"] == pytest.approx(8.0 / 5.0)
    assert out.loc[("torch", "dense"), "speedup"] == pytest.approx(0.8)
    assert out.loc[("kernels", "bimask"), "dense_ref"] == "dense on kernels"
    assert math.isnan(out.loc[("x", "bimask"), "speedup"])


class _FailsOnRun(TorchLinearOps):
    def forward(self, x, weight, bias):
        raise RuntimeError("no device for this backend")


def _refuses(layer):
    raise ValueError("this backend cannot take this layer")


def test_a_backend_that_cannot_run_is_a_row_not_a_crash(monkeypatch):
    monkeypatch.setitem(BACKENDS, "runfails", {"linear": lambda layer: _FailsOnRun()})
    monkeypatch.setitem(BACKENDS, "refuses", {"linear": _refuses})
    spec = _spec(methods=("dense", "bimask"), backends=("torch", "runfails", "refuses", "kernels"))
    df = pd.DataFrame(run_step_bench(spec))
    df = df[df.realisation != "physical"].set_index(["method", "backend"])
    assert df.loc[("bimask", "torch"), "status"] == "ok"
    assert df.loc[("bimask", "runfails"), "status"] == "error"
    assert "no device for this backend" in df.loc[("bimask", "runfails"), "reason"]
    assert df.loc[("bimask", "refuses"), "status"] == "unsupported"
    if not torch.cuda.is_available():  # the kernels backend runs on CUDA only
        assert df.loc[("bimask", "kernels"), "status"] == "error"
        assert "CUDA" in df.loc[("bimask", "kernels"), "reason"]


def test_a_spent_time_budget_skips_rows_with_the_reason():
    df = pd.DataFrame(run_step_bench(_spec(methods=("dense", "bimask"), time_budget_s=1e-9)))
    assert (df.status == "skipped").all() and df.reason.str.contains("time budget").all()


def _gemm(layer, pass_, backend, ms, sparse, m, n, k, pattern="2:4"):
    return {"op": "gemm", "layer": layer, "pass": pass_, "pattern": pattern, "backend": backend,
            "status": "ok", "median_ms": ms, "iqr_ms": 0.0, "min_ms": ms, "sparse_path": sparse,
            "m": m, "n": n, "k": k, "dtype": "float32", "config": "{}", "tflops": 1.0,
            "speedup_vs_dense": 1.0, "rel_error": 0.0, "device": "cpu", "perm": "-"}  # fmt: skip


def _sweep_rows() -> pd.DataFrame:
    rows = []
    d, h, t = TINY.d_model, TINY.d_hidden, TINY.tokens
    for name, out, inp, base in (("t.fc1", h, d, 4.0), ("t.fc2", d, h, 6.0)):
        rows += [
            _gemm(name, "fwd", "torch_dense", base, False, out, t, inp),
            _gemm(name, "fwd", "torch_csr", base / 2, True, out, t, inp),
            _gemm(name, "bwd-data", "torch_dense", base, False, inp, t, out),
            _gemm(name, "bwd-data", "torch_csr", base / 2, True, inp, t, out),
            _gemm(name, "bwd-weight", "torch_dense", base, False, out, inp, t, "dense"),
        ]
        for op, ms in (("nm_mask", 1.0), ("backward_mask", 0.5), ("perm_search", 50.0)):
            rows.append({**_gemm(name, "-", "-", ms, False, out, 0, inp), "op": op})
    return pd.DataFrame(rows)


def test_the_projection_is_the_step_views_fc1_plus_fc2(rows):
    sweep = _sweep_rows()
    view = step_view(sweep, 100).set_index(["layer", "method"])
    df = step_report.add_projection(rows, sweep, 100)
    df = df[df.realisation != "physical"].set_index("method")
    for method in ("dense", "srste", "bimask"):
        assert not math.isnan(view.loc[("t.fc1", method), "step_ms"])
        want = view.loc[("t.fc1", method), "step_ms"] + view.loc[("t.fc2", method), "step_ms"]
        assert df.loc[method, "projected_ms"] == pytest.approx(want)
        assert df.loc[method, "projection_error"] == pytest.approx(
            df.loc[method, "step_ms"] / want - 1
        )
    assert math.isnan(df.loc["tmask", "projected_ms"])
    assert "no tmask" in df.loc["tmask", "projection_note"]
    none = step_report.add_projection(rows, None, 100)
    assert none.projected_ms.isna().all() and (none.projection_note == "no sweep given").all()


def _cli(tmp_path, *extra):
    shapes = tmp_path / "tiny.toml"
    shapes.write_text(TOML)
    return ["step", "--shapes", str(shapes), "--backends", "torch", "--budget-s", "0.05",
            "--quiet", *extra]  # fmt: skip


def test_the_cli_writes_the_csv_json_and_table_with_the_projection(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _sweep_rows().to_csv(sweep / "results.csv", index=False)
    out = tmp_path / "run"
    argv = _cli(tmp_path, "--methods", "dense", "bimask", "--scale", "1", "--sweep", str(sweep),
                "--out", str(out))  # fmt: skip
    assert main(argv) == 0
    df = pd.read_csv(out / "step.csv")
    assert set(df.method) == {"dense", "bimask"} and (df.status == "ok").all()
    assert df.projected_ms.notna().all() and df.git_commit.notna().all()
    assert df.device.str.len().gt(0).all()
    text = (out / "step.md").read_text()
    assert "masked dense math" in text and "full shapes" in text and "measured/projected" in text
    assert "dense on torch" in text


def _exit_code(argv) -> int:
    """main's return code, or argparse's exit code for an argument it rejects itself."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(
    "extra,fragment",
    [
        (["--full-shapes", "--scale", "2"], "--full-shapes runs the real shapes"),
        (["--blocks", "nope"], "--blocks: unknown value 'nope'"),
        (["--sweep", "/nonexistent/run"], "--sweep: no results CSV"),
        (["--scale", "0"], "must be an integer >= 1"),
        (["--patterns", "3:2"], "argument --patterns"),
        pytest.param(
            ["--device", "cuda"],
            "CUDA is not available here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_bad_invocations_exit_2_with_one_line_and_no_files(tmp_path, capsys, extra, fragment):
    out = tmp_path / "never"
    assert _exit_code([*_cli(tmp_path, *extra), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert fragment in err[-1] and "error:" in err[-1]
    assert not out.exists()


def test_a_used_out_folder_is_refused_and_a_sweep_of_another_device_too(tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("x")
    assert main([*_cli(tmp_path), "--out", str(used)]) == 2
    assert "--out" in capsys.readouterr().err and (used / "keep.txt").exists()
    sweep = tmp_path / "gpu_sweep"
    sweep.mkdir()
    _sweep_rows().to_csv(sweep / "results.csv", index=False)
    (sweep / "results.json").write_text('{"device_before": {"name": "NVIDIA H100"}}')
    out = tmp_path / "new"
    assert main([*_cli(tmp_path), "--sweep", str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NVIDIA H100" in err[0] and not out.exists()


def test_the_bundled_blocks_are_the_real_shapes_and_scale_to_multiples_of_16():
    blocks = {b.name: b for b in load_blocks()}
    assert (blocks["vit_l.mlp"].d_model, blocks["vit_l.mlp"].d_hidden) == (1024, 4096)
    assert blocks["vit_l.mlp"].tokens == 13008 and blocks["llama2_7b.mlp"].tokens == 4096
    assert (blocks["llama2_7b.mlp"].d_model, blocks["llama2_7b.mlp"].d_hidden) == (4096, 11008)
    small = blocks["llama2_7b.mlp"].scaled(8)
    assert (small.d_model, small.d_hidden, small.tokens) == (512, 1376, 512)
    assert blocks["vit_l.mlp"].scaled(1, tokens=100).tokens == 100


def test_a_bad_shapes_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[block]]\nname = "x"\nd_model = 0\nd_hidden = 8\ntokens = 4\n')
    with pytest.raises(ValueError, match="d_model must be an integer >= 1"):
        load_blocks(bad)
    assert Path(bad).exists()


def test_physical_rows_appear_where_the_layers_offer_it():
    from suite.step_bench import physical_available

    if why := physical_available():
        pytest.skip(f"perm_realisation='physical' is not in this tree ({why})")
    df = pd.DataFrame(run_step_bench(_spec(methods=("bimask",))))
    assert set(df.realisation) == {"gather", "physical"}
    assert (df.status == "ok").all(), df.reason.tolist()
    phys = df[df.realisation == "physical"].iloc[0]
    assert phys.permutation_ms > 0  # the search and the reorder, amortised
    assert sum(phys[f"{p}_ms"] for p in PARTS) == pytest.approx(phys.step_ms)


def test_the_table_writes_failures_and_missing_projections_in_words(rows):
    df = pd.concat([rows, pd.DataFrame([{**rows.iloc[0].to_dict(), "backend": "x",
                                         "status": "error", "reason": "no GPU"}])])  # fmt: skip
    df = step_report.add_projection(step_report.add_speedups(df), None, 100)
    meta = {"device_name": "cpu", "device": "cpu", "dtype": "float32", "scaling": "full",
            "budget_s": 1, "target_rse": 0.02, "permutation": "greedy", "perm_every": 100,
            "speedup_ref": "dense on torch", "projection": "no sweep given"}  # fmt: skip
    text = step_report.markdown(df, meta)
    assert "error: no GPU" in text and "nan" not in text
    assert "Projection: no sweep given." in text
