"""Tune once, train with the winners: the tuned-configs file (bimask.tuned), its export from a
run (python -m suite export-tuned) and its use by the kernels backend and bimask.train."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import suite.cli
from bimask import SparseLinear, desparsify, sparsify
from bimask.backends import BACKENDS as TRAINING
from bimask.models import build_model
from bimask.train.checkpoint import check_resume_config
from bimask.tuned import KIND, SCHEMA, TunedConfigs, TunedConfigsError, check_device
from kernels.registry import VARIANTS
from suite import store
from suite.backends import BACKENDS
from suite.tuned_export import TRAINING_BACKENDS, winners

ROOT = Path(__file__).resolve().parents[1]
# Valid configs of this checkout's kernels, other than the defaults (from the registry, so a new
# tunable does not break the tests): two sm80 ones and the sm90 default.
_SM80 = VARIANTS["nm_spmm"]
SM80_A, SM80_B = sorted(
    (c.to_dict() for c in _SM80.corners() if c != _SM80.default()), key=json.dumps
)
SM90_A = VARIANTS["nm_spmm_sm90"].default().to_dict()
CUTLASS_DEFAULT = VARIANTS["cutlass_sm90_sparse"].default().to_dict()


def _row(backend, pass_="fwd", n=4096, ms=1.0, config=None, status="ok", **kw):
    m, k = (4096, 1024) if pass_ == "fwd" else (1024, 4096)
    sparse = BACKENDS[backend].kind == "sparse"
    return {
        "op": "nm_gemm",
        "layer": "vit_l.fc1",
        "backend": backend,
        "pass": pass_,
        "pattern": "2:4",
        "perm": "-" if pass_ == "fwd" else "greedy",
        "m": m,
        "n": n,
        "k": k,
        "dtype": "bfloat16",
        "config": json.dumps(config or {}),
        "status": status,
        "median_ms": ms,
        "iqr_ms": 0.01,
        "tflops": 1.0,
        "speedup_vs_dense": 2.0 / ms,
        "rel_error": 1e-3,
        "sparse_path": sparse,
        "device": BACKENDS[backend].device,
        **kw,
    }


def _gpu_run(tmp_path: Path) -> Path:
    """A fabricated results table of a GPU run: winners, slower rows, and rows to ignore."""
    rl = "perm_realisation"
    rows = [
        _row("bimask_sparse", ms=0.9, config=SM80_A),
        _row("bimask_sparse_sm90", ms=0.5, config=SM90_A),  # the kernels' fwd winner
        _row("bimask_sparse_sm90", ms=0.1, config=SM90_A, status="wrong"),  # failed: ignored
        _row("cublas", ms=0.05),  # dense: ignored
        _row("bimask_dense", ms=0.04, config=SM80_A),  # dense twin of ours: ignored
        _row("torch_masked", ms=0.01),  # a CPU backend: ignored
        _row("cusparselt", ms=0.7, config={"alg_id": 1, "split_k": 1}),
        _row("cusparselt", ms=0.6, config={"alg_id": 3, "split_k": 2}),  # cusparselt's winner
        _row("cusparselt", n=256, ms=0.2, config={"alg_id": 0, "split_k": 1}),
        _row("bimask_sparse", "bwd-data", ms=0.8, config={**SM80_B, rl: "in_kernel"}),
        _row("bimask_sparse", "bwd-data", ms=0.6, config={**SM80_A, rl: "physical"}),
        _row("cusparselt", "bwd-data", ms=0.9, config={"alg_id": 2, "split_k": 1, rl: "gather"}),
        _row("cutlass_sm90", ms=0.4, config={**CUTLASS_DEFAULT, rl: "-"}),
    ]
    run = tmp_path / "run"
    meta = {"device_before": {"kind": "cuda", "name": "NVIDIA H200", "capability": "9.0"}}
    store.save(pd.DataFrame(rows), run, meta)
    key = {**{c: rows[1][c] for c in ("op", "m", "n", "k", "dtype", "pattern", "perm")}}
    key.update(seed=0, layer="vit_l.fc1", backend="bimask_sparse_sm90", config=SM90_A)
    key.update({"pass": "fwd", "backend_version": "5eed0123 nvcc 13.0"})
    lines = ['{"type":"header","schema":2}', json.dumps({"type": "row", "key": key}), "{torn"]
    (run / "cache.jsonl").write_text("\n".join(lines))
    return run


def _export(tmp_path, capsys) -> TunedConfigs:
    out = tmp_path / "tuned.json"
    assert suite.cli.main(["export-tuned", str(_gpu_run(tmp_path)), "--out", str(out)]) == 0
    assert (
        "7 winners (3 cusparselt, 1 cutlass_sm90, 3 kernels) tuned on NVIDIA H200"
        in capsys.readouterr().out
    )
    return TunedConfigs.load(out)


def test_export_then_load_then_lookup_round_trip(tmp_path, capsys):
    tuned = _export(tmp_path, capsys)
    assert tuned.device == {"name": "NVIDIA H200", "capability": "9.0"}
    assert tuned.source["run"].endswith("run") and tuned.source["git_commit"]
    fwd = tuned.lookup("kernels", "fwd", 4096, 4096, 1024, "2:4", "bfloat16")
    assert fwd.suite_backend == "bimask_sparse_sm90" and fwd.median_ms == 0.5  # not the failed
    assert fwd.config == {**SM90_A, "family": "sm90"} and fwd.family == "sm90"
    assert fwd.speedup_vs_dense == pytest.approx(4.0)
    assert fwd.source_hash == "5eed0123"  # from the run's cache: results rows lack it
    cslt = tuned.lookup("cusparselt", "fwd", 4096, 4096, 1024, "2:4", torch.bfloat16)
    assert cslt.config == {"alg_id": 3, "split_k": 2} and cslt.family is None
    cutlass = tuned.lookup("cutlass_sm90", "fwd", 4096, 4096, 1024, "2:4", "bfloat16")
    assert (
        cutlass.config == {**CUTLASS_DEFAULT, "perm_realisation": "-"} and cutlass.median_ms == 0.4
    )
    # bwd-data: one winner per realisation, the permutation's realisation recorded
    bwd = tuned.lookup("kernels", "bwd-data", 1024, 4096, 4096, "2:4", "bfloat16")
    assert bwd.realisation == "physical" and bwd.median_ms == 0.6  # the fastest of both
    gather = tuned.lookup("kernels", "bwd-data", 1024, 4096, 4096, "2:4", "bfloat16", "in_kernel")
    assert gather.config == {**SM80_B, "perm_realisation": "in_kernel", "family": "sm80"}
    assert gather.perm == "greedy"
    assert (
        tuned.lookup("kernels", "bwd-data", 1024, 4096, 4096, "2:4", "bfloat16", "gather") is None
    )
    # no entry: other k, pattern, dtype, pass, or a backend with none
    assert tuned.lookup("kernels", "fwd", 4096, 4096, 2048, "2:4", "bfloat16") is None
    assert tuned.lookup("kernels", "fwd", 4096, 4096, 1024, "1:4", "bfloat16") is None
    assert tuned.lookup("kernels", "fwd", 4096, 4096, 1024, "2:4", "float16") is None
    assert tuned.lookup("torch", "fwd", 4096, 4096, 1024, "2:4", "bfloat16") is None


def test_lookup_takes_the_nearest_token_count_in_log_space(tmp_path, capsys):
    tuned = _export(tmp_path, capsys)  # cusparselt fwd entries at n = 256 and n = 4096

    def alg(n):
        return tuned.lookup("cusparselt", "fwd", 4096, n, 1024, "2:4", "bfloat16").config["alg_id"]

    assert alg(256) == 0 and alg(4096) == 3 and alg(1) == 0 and alg(100_000) == 3
    assert alg(1000) == 0  # log: 1000/256 = 3.9 < 4096/1000 = 4.1
    assert alg(1100) == 3  # log: 4096/1100 = 3.7 < 1100/256 = 4.3 (linear would say 256)
    assert alg(1024) == 3  # the geometric midpoint: a tie goes to the larger n


def test_the_exporter_keeps_correct_sparse_gpu_rows_only():
    rows = pd.DataFrame(
        [
            _row("bimask_sparse", ms=0.1, status="launch", config=SM80_A),
            _row("bimask_sparse", ms=float("nan"), config=SM80_A),  # never timed
            _row("bimask_dense", ms=0.1, config=SM80_A),
            _row("cublas", ms=0.1),
            _row("torch_masked", ms=0.1),
            _row("bimask_sparse", "bwd-weight", ms=0.1, config=SM80_A),
            _row("bimask_sparse", ms=0.3, config=SM80_A, dtype="float32"),
        ]
    )
    assert winners(rows) == []
    rows.loc[len(rows)] = _row("bimask_sparse", ms=0.9, config=SM80_A)
    (entry,) = winners(rows)
    assert entry["median_ms"] == 0.9 and entry["suite_backend"] == "bimask_sparse"


def test_the_backend_table_names_registered_gpu_sparse_backends():
    for name, (training, family) in TRAINING_BACKENDS.items():
        assert BACKENDS[name].kind == "sparse" and BACKENDS[name].device == "cuda"
        assert training in TRAINING and training != "torch"
        assert (family is None) == (training != "kernels")


def _doc(**change) -> dict:
    entry = {
        "backend": "kernels",
        "pass": "fwd",
        "m": 32,
        "n": 24,
        "k": 64,
        "pattern": "2:4",
        "dtype": "bfloat16",
        "config": {**SM80_A, "family": "sm80"},
        "suite_backend": "bimask_sparse",
        "median_ms": 0.5,
    }
    entry.update(change.pop("entry", {}))
    for name in change.pop("drop", ()):
        entry.pop(name)
    doc = {
        "kind": KIND,
        "schema": SCHEMA,
        "device": {"name": "NVIDIA H200", "capability": "9.0"},
        "source": {"run": "r", "git_commit": "abc"},
        "entries": [entry],
    }
    doc.update(change)
    return doc


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("{not json", "is not valid JSON (truncated or damaged?"),
        (json.dumps(_doc())[:-20], "is not valid JSON (truncated or damaged?"),
        (json.dumps(_doc(kind="bimask-checkpoint")), "is not a tuned-configs file (kind"),
        (json.dumps([1, 2]), "is not a tuned-configs file"),
        (json.dumps(_doc(schema=SCHEMA + 1)), f"has schema {SCHEMA + 1}; this version reads"),
        (json.dumps(_doc(drop=["median_ms"])), "entries[0]: field 'median_ms' is missing"),
        (json.dumps(_doc(entry={"m": "32"})), "entries[0]: 'm' must be an integer >= 1"),
        (json.dumps(_doc(entry={"m": True})), "'m' must be an integer >= 1, got True"),
        (json.dumps(_doc(entry={"median_ms": -1})), "'median_ms' must be a finite number > 0"),
        (json.dumps(_doc(entry={"pass": "bwd-weight"})), "'pass' must be one of"),
        (json.dumps(_doc(entry={"pattern": "2-4"})), "'pattern' must be an N:M pattern"),
        (json.dumps(_doc(entry={"config": [1]})), "'config' must be an object"),
        (json.dumps(_doc(entry={"config": SM80_A})), "config needs its kernel 'family'"),
        (json.dumps(_doc(entry={"colour": "red"})), "unknown field(s) ['colour']"),
        (json.dumps(_doc(entries=[])), "'entries' must be a non-empty list"),
        (json.dumps(_doc(device="H200")), "'device' must be an object"),
    ],
)
def test_a_malformed_file_is_a_clear_error_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "tuned.json"
    path.write_text(text)
    with pytest.raises(TunedConfigsError) as err:
        TunedConfigs.load(path)
    assert fragment in str(err.value) and str(path) in str(err.value)
    assert "export-tuned" in str(err.value)  # what to do


def test_a_duplicate_entry_is_refused():
    doc = _doc()
    doc["entries"] *= 2
    with pytest.raises(TunedConfigsError, match=r"entries\[1\]: a second entry"):
        TunedConfigs.from_dict(doc)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def test_export_tuned_bad_invocations_exit_2_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "tuned.json"
    main = suite.cli.main
    assert main(["export-tuned", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no results CSV" in _one_error_line(capsys)
    cpu_run = str(ROOT / "results/reference/bench/cpu")
    assert main(["export-tuned", cpu_run, "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "no exportable rows" in line and "--tier gpu" in line and "torch_dense" in line
    assert not out.exists()
    run = _gpu_run(tmp_path)
    out.write_text("keep me")
    assert main(["export-tuned", str(run), "--out", str(out)]) == 2
    assert "exists and would be overwritten; pass --force" in _one_error_line(capsys)
    assert out.read_text() == "keep me"
    assert main(["export-tuned", str(run), "--out", str(run / "results.csv")]) == 2
    _one_error_line(capsys)
    assert main(["export-tuned", str(run), "--out", str(out), "--force"]) == 0
    assert TunedConfigs.load(out).entries


def test_a_file_from_another_device_is_noted_once_and_never_fails():
    tuned = TunedConfigs.from_dict(_doc(), "t.json")
    assert tuned.device_note("NVIDIA H200", "9.0") is None
    note = tuned.device_note("NVIDIA A100-SXM4-80GB", "8.0")
    assert "tuned on NVIDIA H200 (compute capability 9.0)" in note and "A100" in note
    assert check_device(tuned, torch.device("cpu")) is None  # nothing is tuned for a CPU


def test_sparsify_hands_the_file_to_every_layer_and_desparsify_removes_it(tmp_path):
    path = tmp_path / "tuned.json"
    path.write_text(json.dumps(_doc()))
    model = build_model("mlp")
    decisions = sparsify(model, "2:4", "bimask", "greedy", tuned=str(path))
    layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
    assert layers and any(d.sparse for d in decisions)
    assert len({id(m.tuned) for m in layers}) == 1  # read once, shared
    assert layers[0].tuned.entries[0].m == 32
    desparsify(model)
    assert not any(hasattr(m, "tuned") for m in model.modules())
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    fresh = build_model("mlp")
    with pytest.raises(TunedConfigsError):
        sparsify(fresh, "2:4", "bimask", "greedy", tuned=bad)
    assert not any(isinstance(m, SparseLinear) for m in fresh.modules())  # unchanged


def test_resuming_with_another_tuned_file_is_allowed():
    saved = {"method": "bimask", "tuned_configs": "a.json"}
    check_resume_config(saved, {**saved, "tuned_configs": "b.json"}, Path("ckpt.pt"))
    check_resume_config(saved, {**saved, "tuned_configs": None}, Path("ckpt.pt"))


def test_train_with_a_bad_tuned_file_fails_before_any_output(tmp_path, capsys):
    from bimask.train.__main__ import main

    bad = tmp_path / "tuned.json"
    bad.write_text(json.dumps(_doc(schema=99)))
    args = ["--dataset", "synthetic", "--model", "mlp", "--epochs", "1"]
    assert main([*args, "--tuned-configs", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "has schema 99" in _one_error_line(capsys)
    assert main([*args, "--tuned-configs", str(tmp_path / "no.json"), "--out", "x"]) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert not (tmp_path / "r").exists() and not Path("x").exists()


@pytest.fixture
def kernels_on_cpu(monkeypatch):
    """The kernels backend with its launches replaced by CPU references (as in
    test_training_kernels.py), recording the family and config each GEMM was launched with."""
    from kernels import compress, training
    from kernels.reference import nm_gemm_reference
    from kernels.registry import VARIANTS

    calls = []

    def fake_gemm(a, b, config, *, perm=None, transpose_out=False, family="sm80", out_dtype=None):
        calls.append({"k": a.k, "n": b.shape[0], "config": config, "family": family})
        return nm_gemm_reference(a, b, perm=perm, transpose_out=transpose_out, out_dtype=out_dtype)

    monkeypatch.setattr(training, "compress_gpu", lambda w, p, **kw: compress(w, p))
    monkeypatch.setattr(training, "nm_gemm", fake_gemm)
    monkeypatch.setattr(
        training.KernelLinearOps, "_setup", lambda self, t: ("sm80", VARIANTS["nm_spmm"].default())
    )
    monkeypatch.setattr(training, "_runs_here", lambda family, config, device: True)
    return calls


def test_the_kernels_backend_launches_each_gemm_with_its_tuned_config(kernels_on_cpu):
    from kernels.registry import VARIANTS
    from kernels.space import Config

    bwd = {"pass": "bwd-data", "m": 64, "k": 32, "suite_backend": "bimask_sparse"}
    doc = _doc()  # fwd of a 64 -> 32 Linear at 24 tokens: m=32, n=24, k=64
    doc["entries"].append(
        {
            **doc["entries"][0],
            **bwd,
            "config": {**SM80_B, "family": "sm80", "perm_realisation": "in_kernel"},
        }
    )
    doc["entries"].append(  # the other realisation: not what this backend runs for bimask
        {
            **doc["entries"][0],
            **bwd,
            "median_ms": 0.1,
            "config": {**SM90_A, "family": "sm90", "perm_realisation": "physical"},
        }
    )
    tuned = TunedConfigs.from_dict(doc)
    asked = []
    lookup = tuned.lookup
    tuned.lookup = lambda *a, **kw: asked.append((a, kw)) or lookup(*a, **kw)
    torch.manual_seed(0)
    layer = SparseLinear(
        64, 32, method="bimask", permutation="greedy", backend="kernels", tuned=tuned
    )
    x = torch.randn(2, 12, 64, requires_grad=True)
    layer(x).sum().backward()
    fwd, dx = sorted(kernels_on_cpu, key=lambda c: -c["k"])
    assert fwd["k"] == 64 and fwd["config"] == Config.of(SM80_A) and fwd["family"] == "sm80"
    assert dx["k"] == 32 and dx["config"] == Config.of(SM80_B) and dx["family"] == "sm80"
    assert ("kernels", "fwd", 32, 24, 64, "2:4", "bfloat16") in [a for a, _ in asked]
    assert (
        ("kernels", "bwd-data", 64, 24, 32, "2:4", "bfloat16"),
        {"realisation": "in_kernel"},
    ) in asked
    kernels_on_cpu.clear()  # another batch size: the nearest n still applies
    layer(torch.randn(100, 64)).sum().backward()
    assert {c["n"] for c in kernels_on_cpu} == {100}
    assert all(c["config"] != VARIANTS["nm_spmm"].default() for c in kernels_on_cpu)
    kernels_on_cpu.clear()  # a shape the file has no entry for: the default
    other = SparseLinear(
        128, 32, method="bimask", permutation="greedy", backend="kernels", tuned=tuned
    )
    other(torch.randn(24, 128)).sum().backward()
    assert all(c["config"] == VARIANTS["nm_spmm"].default() for c in kernels_on_cpu)


def test_a_kernels_entry_that_is_not_a_config_of_these_kernels_fails_when_the_layer_is_made():
    bad = TunedConfigs.from_dict(
        _doc(entry={"config": {**SM80_A, "BLOCK_M": 96, "family": "sm80"}}), "t.json"
    )
    with pytest.raises(ValueError, match=r"t.json, entry 0: .*not in its space.*re-tune"):
        SparseLinear(64, 32, backend="kernels", tuned=bad)
    unknown = TunedConfigs.from_dict(_doc(entry={"config": {**SM80_A, "family": "sm70"}}), "u.json")
    with pytest.raises(ValueError, match="unknown kernel family 'sm70'"):
        SparseLinear(64, 32, backend="kernels", tuned=unknown)


def test_training_notes_a_file_from_another_gpu_once(monkeypatch):
    from bimask.train.loop import tuned_notes

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    tuned = TunedConfigs.from_dict(_doc(), "once.json")
    cuda = torch.device("cuda")
    (note,) = tuned_notes(tuned, "kernels", cuda)
    assert "once.json were tuned on NVIDIA H200" in note and "A100" in note
    assert tuned_notes(tuned, "kernels", cuda) == []  # reported once
    assert "no entries for backend cusparselt" in tuned_notes(tuned, "cusparselt", cuda)[0]
    assert "backend torch reads no tuned configs" in tuned_notes(tuned, "torch", cuda)[0]
    assert tuned_notes(None, "kernels", cuda) == []


def test_a_run_resumes_with_another_tuned_file(tmp_path, capsys):
    from bimask.train.__main__ import main

    files = []
    for name in ("a.json", "b.json"):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(_doc()))
    args = ["--dataset", "synthetic", "--model", "mlp", "--epochs", "2", "--train-subset", "64"]
    args += ["--test-subset", "64", "--batch-size", "64", "--permutation", "identity"]
    args += ["--out", str(tmp_path / "r")]
    assert main([*args, "--stop-after", "1", "--tuned-configs", str(files[0])]) == 0
    assert "note: backend torch reads no tuned configs" in capsys.readouterr().err
    assert main([*args, "--resume", "--tuned-configs", str(files[1])]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(summary["history"]) == 2 and summary["config"]["tuned_configs"] == str(files[1])
