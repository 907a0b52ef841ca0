import json
import math
import warnings
from dataclasses import replace

import pytest
import torch

from suite.backends import Backend, BackendFailure, Prepared, get_backend
from suite.cache import CacheMismatchError, ResultCache
from suite.problem import GemmProblem, make_inputs, reference
from suite.space import SearchSpace
from suite.tuner import TuneSettings, tune

PROBLEM = GemmProblem("nm_gemm", "fwd", 64, 32, 128, "float32", "2:4")
FAST = TuneSettings(budget_s=0.02, min_reps=3)


def _faulty_prepare(problem, inputs, config):
    mode = config["mode"]
    if mode == "unsupported":
        raise BackendFailure("unsupported", "this tile does not fit")
    if mode == "compile":
        raise RuntimeError("ptxas error: too many registers")
    a, bt = inputs.a, inputs.b.t()
    if mode == "launch":

        def boom(out):
            raise RuntimeError("an illegal memory access was encountered")

        return Prepared(lambda: None, boom, sparse_path=True)
    if mode == "wrong":
        return Prepared(lambda: None, lambda out: out.copy_(a @ bt + 1.0), sparse_path=True)
    if mode == "partial":  # leaves part of the poisoned output untouched
        return Prepared(lambda: None, lambda out: out[:, :-1].copy_((a @ bt)[:, :-1]), True)
    return Prepared(lambda: a @ bt, lambda out: torch.matmul(a, bt, out=out), sparse_path=True)


FAULTY = Backend(
    "faulty",
    "cpu",
    "sparse",
    _faulty_prepare,
    lambda p: SearchSpace({"mode": ("ok", "unsupported", "compile", "launch", "wrong", "partial")}),
)


def test_failing_configs_become_rows_and_the_sweep_goes_on():
    rows = tune(PROBLEM, FAULTY, None, FAST)
    status = {json.loads(r["config"])["mode"]: r for r in rows}
    assert status["ok"]["status"] == "ok" and status["ok"]["is_best"]
    assert status["unsupported"]["status"] == "unsupported"
    assert status["compile"]["status"] == "compile" and "ptxas" in status["compile"]["reason"]
    assert status["launch"]["status"] == "launch"
    assert status["wrong"]["status"] == "wrong_answer"
    assert status["partial"]["status"] == "wrong_answer"  # the poisoned NaNs are caught
    assert math.isnan(status["wrong"]["median_ms"])


def test_real_backends_verify_and_time():
    for name in ("torch_dense", "torch_masked", "torch_tiled", "torch_csr"):
        rows = tune(PROBLEM, get_backend(name), None, FAST)
        ok = [r for r in rows if r["status"] == "ok"]
        assert ok and all(r["rel_error"] < 1e-4 and r["median_ms"] > 0 for r in ok), name
        assert sum(r["is_best"] for r in rows) == 1


def test_unsupported_problem_is_one_row():
    rows = tune(
        GemmProblem("gemm", "bwd-weight", 32, 32, 64, "float32", "dense"),
        get_backend("torch_csr"),
        None,
        FAST,
    )
    assert len(rows) == 1 and rows[0]["status"] == "unsupported"


def test_inputs_are_fresh_random_and_masked():
    inputs = make_inputs(PROBLEM)
    assert (inputs.b != 0).all() and inputs.a.abs().sum() > 0
    assert (inputs.a.reshape(64, 32, 4).ne(0).sum(-1) <= 2).all()
    bwd = GemmProblem("nm_gemm", "bwd-data", 64, 32, 128, "float32", "2:4", perm="greedy")
    got = make_inputs(bwd)
    groups = got.mask[:, got.perm].reshape(64, 32, 4).sum(-1)  # N:M along k in pi order
    assert (groups <= 2).all()
    assert torch.allclose(reference(got).float(), got.a @ got.b.t(), atol=1e-4)


def test_cache_makes_a_rerun_free(tmp_path):
    cache = ResultCache(tmp_path / "c.jsonl", {"device": "x"})
    first = tune(PROBLEM, get_backend("torch_tiled"), cache, FAST)
    calls = []
    spy = replace(get_backend("torch_tiled"), prepare=lambda *a: calls.append(a))
    second = tune(PROBLEM, spy, ResultCache(tmp_path / "c.jsonl", {"device": "x"}), FAST)
    assert not calls
    assert [r["median_ms"] for r in first] == [r["median_ms"] for r in second]


def _row(v: float) -> dict:
    return {"status": "ok", "config": "{}", "median_ms": v}


def test_a_torn_tail_is_cut_and_the_cache_appends_after_it(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = ResultCache(path, {"device": "x"})
    for i in range(3):
        cache.put({"i": i}, _row(i))
    path.write_text(path.read_text() + '{"type": "ro')
    with pytest.warns(UserWarning, match="torn last line"):
        again = ResultCache(path, {"device": "x"})
    assert [again.get({"i": i}) for i in range(3)] == [_row(0), _row(1), _row(2)]
    again.put({"i": 3}, _row(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the torn tail is gone: no warning this time
        reopened = ResultCache(path, {"device": "x"})
    assert reopened.get({"i": 3}) == _row(3) and len(reopened) == 4
    assert path.read_text().endswith("\n")


def test_cache_from_another_device_is_refused_but_replayable(tmp_path):
    path = tmp_path / "c.jsonl"
    ResultCache(path, {"device": "NVIDIA H100"}).put({"k": 1}, _row(1))
    with pytest.raises(CacheMismatchError, match="H100"):
        ResultCache(path, {"device": "AMD EPYC"})
    assert ResultCache(path, None, replay=True).get({"k": 1}) == _row(1)


def test_backends_of_one_problem_share_its_inputs_and_reference():
    from suite.problem import GemmProblem
    from suite.tuner import inputs_and_reference

    p = GemmProblem("nm_gemm", "fwd", 32, 16, 64, "float32", "2:4")
    first = inputs_and_reference(p, "cpu")
    assert inputs_and_reference(p, "cpu") is first  # the second backend reuses them
    other = GemmProblem("nm_gemm", "fwd", 32, 16, 128, "float32", "2:4")
    assert inputs_and_reference(other, "cpu") is not first
    again = inputs_and_reference(p, "cpu")  # rebuilt after another problem: the same values
    assert torch.equal(again[0].a, first[0].a) and torch.equal(again[1], first[1])


def test_dense_baselines_run_the_unmasked_weight_and_are_checked_against_it():
    from dataclasses import replace

    from suite.backends import BACKENDS
    from suite.problem import GemmProblem, make_inputs
    from suite.tuner import TuneSettings, tune

    seen = {}

    def spy(name):
        real = BACKENDS[name]

        def prepare(problem, inputs, config):
            seen[name] = inputs
            return real.prepare(problem, inputs, config)

        return replace(real, prepare=prepare)

    p = GemmProblem("nm_gemm", "bwd-data", 64, 32, 128, "float32", "2:4", perm="greedy")
    settings = TuneSettings(budget_s=0.01, min_reps=2)
    rows = {
        name: tune(p, spy(name), None, settings)[0]
        for name in ("torch_dense", "torch_masked", "torch_csr")
    }
    inputs = make_inputs(p)
    assert torch.equal(seen["torch_dense"].a, inputs.a_dense)  # W^T, no zeros from the mask
    assert bool((inputs.a_dense != 0).all()) and seen["torch_dense"].mask is None
    assert torch.equal(seen["torch_masked"].a, inputs.a)
    assert torch.equal(seen["torch_csr"].a, inputs.a)
    assert torch.equal(inputs.a, inputs.a_dense * inputs.mask)
    for name, row in rows.items():  # each verified against the reference of what it ran
        assert row["status"] == "ok" and row["rel_error"] < 1e-4, (name, row["reason"])
    assert rows["torch_dense"]["operand"] == "unmasked"
    assert rows["torch_masked"]["operand"] == "masked"
