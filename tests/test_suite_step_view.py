"""Per-step compression rows and the training-step view that prices them."""

import math

import pandas as pd
import pytest
import torch

from bimask import bimask_backward_mask, find_permutation, nm_mask
from suite import compressors
from suite.compressors import COMPRESSORS, Compressor, compressor_of, compressors_for
from suite.problem import Layer
from suite.step_view import step_view
from suite.sweep import SweepSpec, compress_rows
from suite.tuner import TuneSettings

LAYER = Layer("l", 64, 128, 0)


def _spec(backends, device="cpu"):
    return SweepSpec(
        (LAYER,), ("2:4",), ("greedy",), backends, "float32", device, TuneSettings(budget_s=0.02)
    )


def _operands():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(LAYER.out, LAYER.inp, generator=g)
    mf = nm_mask(w, "2:4")
    pi = find_permutation(w, mf, "2:4", "greedy")
    mb = bimask_backward_mask(w, mf, "2:4", pi)
    return w, mf, (w * mb).t()[:, pi]


def test_every_sparse_backend_has_a_compressor():
    from suite.backends import BACKENDS

    sparse = [b.name for b in BACKENDS.values() if b.kind == "sparse"]
    assert sparse and all(compressor_of(name) for name in sparse)
    assert compressor_of("torch_dense") is None


def test_compressors_follow_the_device_and_the_backends():
    assert [c.name for c in compressors_for(("torch_csr", "torch_dense"), "cpu")] == ["torch_csr"]
    assert compressors_for(("torch_dense",), "cpu") == []
    gpu = {c.name for c in compressors_for(("bimask_sparse_sm90", "cusparselt"), "cuda")}
    assert gpu == {"bimask_gpu", "cusparselt"}


def test_compress_rows_time_both_operands_with_their_shapes():
    w, mf, a_bwd = _operands()
    rows = compress_rows(LAYER, "2:4", w, mf, a_bwd, _spec(("torch_csr",)))
    by_op = {r["op"]: r for r in rows}
    assert set(by_op) == {"compress", "compress_bwd"}  # torch_csr has no fused mask + pack
    assert (by_op["compress"]["m"], by_op["compress"]["k"]) == (64, 128)
    assert (by_op["compress_bwd"]["m"], by_op["compress_bwd"]["k"]) == (128, 64)
    for r in rows:
        assert r["status"] == "ok" and r["median_ms"] > 0 and r["compress_backend"] == "torch_csr"


def test_a_failing_compressor_is_a_data_row(monkeypatch):
    def broken(a, pattern):
        raise RuntimeError("no such format")

    fake = Compressor("broken", "cpu", ("torch_csr",), lambda: None, broken)
    monkeypatch.setitem(compressors.COMPRESSORS, "torch_csr", fake)
    w, mf, a_bwd = _operands()
    rows = compress_rows(LAYER, "2:4", w, mf, a_bwd, _spec(("torch_csr",)))
    assert len(rows) == 2 and all(r["status"] == "error" for r in rows)
    assert all("no such format" in r["reason"] and math.isnan(r["median_ms"]) for r in rows)


def test_unsupported_pattern_is_a_row_with_the_reason():
    gpu = COMPRESSORS["cusparselt"]
    assert "no sparse tensor-core format" in gpu.supports("4:8")
    assert gpu.supports("2:4") is None


def _gemm(pass_, backend, ms, sparse, pattern="2:4"):
    return {
        "op": "gemm",
        "layer": "l",
        "pass": pass_,
        "pattern": pattern,
        "backend": backend,
        "status": "ok",
        "median_ms": ms,
        "sparse_path": sparse,
        "n": 32,
        "k": 128 if pass_ != "bwd-weight" else 32,
    }


def _mask(op, ms, backend=None):
    row = {"op": op, "layer": "l", "pattern": "2:4", "status": "ok", "median_ms": ms}
    return {**row, "compress_backend": backend} if backend else row


def _frame(with_compress: bool) -> pd.DataFrame:
    rows = [
        _gemm("fwd", "torch_dense", 10.0, False),
        _gemm("fwd", "torch_csr", 4.0, True),
        _gemm("bwd-data", "torch_dense", 10.0, False),
        _gemm("bwd-data", "torch_csr", 5.0, True),
        _gemm("bwd-weight", "torch_dense", 10.0, False, pattern="dense"),
        _mask("nm_mask", 1.0),
        _mask("backward_mask", 0.5),
        _mask("perm_search", 100.0),
    ]
    if with_compress:
        rows += [_mask("compress", 2.0, "torch_csr"), _mask("compress_bwd", 3.0, "torch_csr")]
        rows += [_mask("compress", 0.1, "cusparselt")]  # another backend's: not used here
    return pd.DataFrame(rows)


def test_step_view_adds_the_compression_of_the_backend_that_ran():
    view = step_view(_frame(with_compress=True), perm_every=100).set_index("method")
    assert view.loc["dense", "step_ms"] == pytest.approx(30.0)
    # srste: sparse fwd 4 + dense bwd 10 + bww 10 + nm_mask 1 + compress(W*Mf) 2
    assert view.loc["srste", "step_ms"] == pytest.approx(27.0)
    # bimask: 4 + 5 + 10 + 1 + 0.5 + 100/100 + 2 + 3
    assert view.loc["bimask", "step_ms"] == pytest.approx(26.5)
    assert "not measured" not in view.loc["bimask", "kernels"]


def test_step_view_says_when_compression_was_not_measured():
    view = step_view(_frame(with_compress=False), perm_every=100).set_index("method")
    assert view.loc["bimask", "step_ms"] == pytest.approx(21.5)
    assert "compress not measured" in view.loc["bimask", "kernels"]
    assert "compress_bwd not measured" in view.loc["bimask", "kernels"]


def test_a_dense_fallback_compresses_nothing():
    df = _frame(with_compress=True)
    df.loc[df.backend == "torch_csr", "median_ms"] = 50.0  # sparse slower: dense is chosen
    view = step_view(df, perm_every=100).set_index("method")
    assert view.loc["srste", "step_ms"] == pytest.approx(31.0)  # 10 + 10 + 10 + nm_mask 1
    assert "(dense)" in view.loc["srste", "kernels"]


def test_own_ratio_pairs_each_sparse_kernel_with_its_dense_twin():
    from suite.report import own_ratio_table

    def row(backend, ms, pass_="fwd", perm="-"):
        base = {"layer": "sq", "pass": pass_, "pattern": "2:4", "perm": perm, "m": 8, "n": 8}
        return {**base, "k": 8, "backend": backend, "median_ms": ms}

    best = pd.DataFrame(
        [
            row("bimask_sparse", 2.0),
            row("bimask_dense", 3.0),
            row("bimask_sparse_sm90", 1.0),
            row("bimask_dense_sm90", 1.6),
            row("bimask_sparse", 2.5, "bwd-data", "greedy"),
            row("bimask_dense", 3.0, "bwd-data", "greedy"),
            row("bimask_dense", 2.9, "bwd-data", "random"),  # dense ignores the mask
            row("cublas", 1.2),
        ]
    )
    table = own_ratio_table(best).set_index(["family", "pass"])
    assert table.loc[("sm80", "fwd"), "sparse_speedup"] == pytest.approx(1.5)
    assert table.loc[("sm90", "fwd"), "sparse_speedup"] == pytest.approx(1.6)
    assert table.loc[("sm80", "bwd-data"), "sparse_speedup"] == pytest.approx(2.9 / 2.5)
    assert len(table) == 3


def test_the_physical_realisation_is_its_own_row_and_says_what_it_leaves_out():
    rows = _frame(with_compress=True).to_dict("records")
    rows = [r for r in rows if not (r["op"] == "gemm" and r["backend"] == "torch_csr")]
    rows += [
        {**_gemm("fwd", "torch_csr", 4.0, True), "config": "{}"},
        {**_gemm("bwd-data", "torch_csr", 5.0, True), "config": '{"perm_realisation": "gather"}'},
        {**_gemm("bwd-data", "torch_csr", 3.0, True), "config": '{"perm_realisation": "physical"}'},
    ]
    view = step_view(pd.DataFrame(rows), perm_every=100).set_index("method")
    # bimask is the paper's method: its bwd-data GEMM gathers dY (5 ms), never the physical 3
    assert view.loc["bimask", "step_ms"] == pytest.approx(26.5)
    assert "torch_csr (gather)" in view.loc["bimask", "kernels"]
    phys = view.loc["bimask-physical"]
    assert phys.step_ms == pytest.approx(24.5)  # the same parts with the 3 ms GEMM
    assert "(physical)" in phys.kernels and "every 100 steps not measured" in phys.kernels
    assert "different method" in phys.kernels
    without = step_view(_frame(with_compress=True), perm_every=100)
    assert "bimask-physical" not in set(without.method)  # no backend timed it: no row
