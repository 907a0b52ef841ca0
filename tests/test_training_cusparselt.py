"""Training on cuSPARSELt: the ``cusparselt`` backend of bimask.backends.

CPU tests run the backend's glue for real with the two torch ops swapped for CPU references of
their semantics (compress keeps the masked matrix after checking it is 2:4-compatible;
sparse_mm is the dense product, 16-bit result, optionally written transposed). The GPU tests
(tests/test_training_gpu.py) compare every backend against torch on a real device.
"""

from types import SimpleNamespace

import pytest
import torch
from backend_pairs import pair, rel
from backend_pairs import run as _run

from bimask import SparseConv2d, SparseLinear, sparsify
from bimask.backends import cusparselt_ops, layer_ops
from bimask.models import build_model
from bimask.profile import profiling

HALF = (torch.bfloat16, torch.float16)


class FakeCslt:
    """CPU stand-ins for torch._cslt_compress / torch._cslt_sparse_mm, recording each call."""

    def __init__(self):
        self.compressed, self.mms = [], []

    def compress(self, a):
        assert a.dim() == 2 and a.is_contiguous() and a.dtype in HALF
        rows, k = a.shape
        assert rows % 16 == 0 and k % 16 == 0
        assert ((a.reshape(rows, k // 4, 4) != 0).sum(-1) <= 2).all(), "not 2:4"
        self.compressed.append(tuple(a.shape))
        return a.clone()  # the "buffer": the masked matrix itself

    def sparse_mm(
        self, packed, dense_b, bias=None, alpha=None, out_dtype=None, transpose_result=False,
        alg_id=0, split_k=1, **kw,
    ):  # fmt: skip
        assert packed.dtype == dense_b.dtype and out_dtype is None and not kw  # 16-bit inputs
        assert dense_b.shape[0] == packed.shape[1] and dense_b.shape[1] % 8 == 0
        self.mms.append(
            {"m": packed.shape[0], "k": packed.shape[1], "n": dense_b.shape[1],
             "alg_id": alg_id, "split_k": split_k, "transpose": transpose_result}
        )  # fmt: skip
        res = (packed.float() @ dense_b.float()).to(packed.dtype)
        return res.t().contiguous() if transpose_result else res


@pytest.fixture
def fake_ops(monkeypatch):
    fake = FakeCslt()
    monkeypatch.setattr(torch, "_cslt_compress", fake.compress)
    monkeypatch.setattr(torch, "_cslt_sparse_mm", fake.sparse_mm)
    return fake


@pytest.fixture
def cslt_on_cpu(fake_ops, monkeypatch):
    monkeypatch.setattr(cusparselt_ops, "_ALLOW_CPU", True)  # the test-only switch
    return fake_ops


def _pair(method, pattern="2:4", permutation="greedy", **kw):
    return pair("cusparselt", method, pattern, permutation, **kw)


@pytest.mark.parametrize("pattern", ["2:4", "1:16"])
@pytest.mark.parametrize("method", ["dense", "srste", "tmask", "bimask"])
@pytest.mark.parametrize("tokens", [12, 5])  # 2 x 5: padded to a multiple of 8
def test_cusparselt_glue_matches_torch_through_autograd(cslt_on_cpu, method, pattern, tokens):
    ref, got = _pair(method, pattern, perm_every=1)
    x, dy = torch.randn(2, tokens, 64), torch.randn(2, tokens, 32)
    y_ref, dx_ref = _run(ref, x, dy)
    y_got, dx_got = _run(got, x, dy)
    assert torch.equal(ref.perm, got.perm)
    assert y_got.shape == y_ref.shape and y_got.dtype == torch.float32  # float32 training
    assert rel(y_got, y_ref) < 1e-2 and rel(dx_got, dx_ref) < 1e-2  # bfloat16 operands
    assert rel(got.weight.grad, ref.weight.grad) < 1e-6  # dense weight gradient: same math
    assert rel(got.bias.grad, ref.bias.grad) < 1e-6
    mms = cslt_on_cpu.mms
    assert all(c["transpose"] and c["n"] == -(-2 * tokens // 8) * 8 for c in mms)
    fwd = [c for c in mms if c["k"] == 64]  # K = in: the forward
    dx = [c for c in mms if c["k"] == 32]  # K = out: the input gradient
    assert len(fwd) == (0 if method == "dense" else 1)
    assert len(dx) == (1 if method in ("tmask", "bimask") else 0)  # srste's dX is not N:M


@pytest.mark.parametrize(
    "method,where",
    [
        ("bimask", "fwd sparse, dX sparse (pi gather), dW dense (cuSPARSELt)"),
        ("tmask", "fwd sparse, dX sparse, dW dense (cuSPARSELt)"),
        ("srste", "fwd sparse, dX dense, dW dense (cuSPARSELt)"),
        ("dense", "fwd dense, dX dense, dW dense (cuSPARSELt)"),
    ],
)
def test_describe_says_where_each_gemm_runs(method, where):
    layer = SparseLinear(64, 32, method=method, backend="cusparselt")
    assert layer_ops("linear", "cusparselt", layer=layer).describe() == where
    layer.backward_as_forward = True  # a probe swapping in Mf: dX is no longer N:M along out
    assert "dX dense" in layer_ops("linear", "cusparselt", layer=layer).describe()


def test_bimask_gathers_dy_and_skips_the_gather_when_pi_is_identity(cslt_on_cpu):
    x, dy = torch.randn(16, 64), torch.randn(16, 32)
    _, got = _pair("bimask")
    with profiling() as prof:
        _run(got, x, dy)
    assert "gather" in prof.totals_ms() and "compress" in prof.totals_ms()

    ref, got = _pair("bimask", permutation="identity")
    got.perm_is_identity = True  # what a physical reordering reports: groups already consecutive
    assert "dX sparse," in layer_ops("linear", "cusparselt", layer=got).describe()
    with profiling() as prof:
        y_got, dx_got = _run(got, x, dy)
    assert "gather" not in prof.totals_ms()
    y_ref, dx_ref = _run(ref, x, dy)
    assert rel(y_got, y_ref) < 1e-2 and rel(dx_got, dx_ref) < 1e-2


def test_compressed_operands_are_reused_until_the_weight_changes(cslt_on_cpu):
    _, layer = _pair("bimask", perm_every=100)
    x, dy = torch.randn(16, 64), torch.randn(16, 32)
    calls = cslt_on_cpu.compressed
    _run(layer, x, dy)
    assert calls == [(32, 64), (64, 32)]  # W*Mf, then (W*Mb)^T
    _run(layer, x, dy)  # gradient accumulation: same weight, same pi
    assert len(calls) == 2
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    opt.step()
    _run(layer, x, dy)
    assert len(calls) == 4  # the weight moved: both recompressed
    layer.eval()
    with torch.no_grad():
        for _ in range(3):
            layer(x)
    assert len(calls) == 4  # eval on the same weights: the training step's W*Mf
    opt.step()
    with torch.no_grad():
        for _ in range(3):
            layer(x)
    assert len(calls) == 5  # new weights: compressed once for the whole eval loop
    layer.weight = torch.nn.Parameter(layer.weight.detach())  # same memory and version, new object
    with torch.no_grad():
        layer(x)
    assert len(calls) == 6

    _, layer = _pair("bimask", perm_every=1)  # a new pi every step: only (W*Mb)^T changes
    calls.clear()
    _run(layer, x, dy)
    _run(layer, x, dy)
    assert calls == [(32, 64), (64, 32), (64, 32)]


def test_tuned_configs_reach_the_op_and_are_looked_up_once_per_shape(cslt_on_cpu):
    class FakeTuned:
        def __init__(self):
            self.calls = []

        def lookup(self, backend, pass_, m, n, k, pattern, dtype, realisation=None):
            self.calls.append((backend, pass_, m, n, k, pattern, dtype, realisation))
            if pass_ == "fwd":
                return SimpleNamespace(config={"alg_id": 3, "split_k": 2})
            return None  # no entry: the backend's default

    _, layer = _pair("bimask")
    layer.tuned = FakeTuned()
    x, dy = torch.randn(24, 64), torch.randn(24, 32)
    _run(layer, x, dy)
    _run(layer, x, dy)
    assert layer.tuned.calls == [
        ("cusparselt", "fwd", 32, 24, 64, "2:4", "bfloat16", None),
        ("cusparselt", "bwd-data", 64, 24, 32, "2:4", "bfloat16", "gather"),  # suite's name
    ]
    fwd = [(c["alg_id"], c["split_k"]) for c in cslt_on_cpu.mms if c["k"] == 64]
    dx = [(c["alg_id"], c["split_k"]) for c in cslt_on_cpu.mms if c["k"] == 32]
    assert fwd == [(3, 2), (3, 2)] and dx == [(0, 1), (0, 1)]
    layer.perm_is_identity = True  # rows reordered physically: the entries timed that way
    layer.perm.copy_(torch.arange(32))  # (what the reordering leaves: pi is the identity)
    _run(layer, x, dy)
    assert layer.tuned.calls[-1][-1] == "physical"


def test_bad_inputs_fail_before_any_op(fake_ops):
    with pytest.raises(ValueError, match="4:8 can keep 4 of an aligned 4.*backend='torch'"):
        SparseLinear(64, 32, pattern="4:8", backend="cusparselt")  # at construction
    with pytest.raises(ValueError, match=r"weight \(40, 64\) \(out_features=40\).*backend='torch'"):
        SparseLinear(64, 40, backend="cusparselt")
    SparseLinear(64, 40, method="dense", backend="cusparselt")  # dense: nothing to refuse
    with pytest.raises(ValueError, match="conv2d runs on"):
        SparseConv2d(16, 16, 3, backend="cusparselt")
    layer = SparseLinear(64, 32, backend="cusparselt")
    with pytest.raises(ValueError, match="runs on CUDA tensors; use backend='torch' on the CPU"):
        layer(torch.randn(8, 64))
    assert fake_ops.compressed == [] and fake_ops.mms == []


def test_sparsify_puts_linears_on_cusparselt_and_convolutions_on_torch():
    decisions = sparsify(build_model("cnn"), "2:4", "bimask", "greedy", backend="cusparselt")
    convs = [d for d in decisions if d.sparse and d.kind == "Conv2d"]
    assert convs and all("conv2d GEMMs on torch" in d.reason for d in convs)
    mlp = sparsify(build_model("mlp"), "2:4", "bimask", "greedy", backend="cusparselt")
    linears = [d for d in mlp if d.sparse]
    assert linears and all(d.reason.endswith("dX sparse (pi gather), dW dense (cuSPARSELt)")
                           for d in linears)  # fmt: skip


def test_train_cli_refuses_the_cusparselt_backend_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from bimask.train.__main__ import main

    args = ["--dataset", "synthetic", "--model", "mlp", "--backend", "cusparselt"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "--backend cusparselt runs the sparse kernels on a GPU" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_both_operands_share_one_16_bit_dtype(cslt_on_cpu):
    torch.manual_seed(0)
    half = SparseLinear(64, 32, backend="cusparselt", dtype=torch.float16)
    x = torch.randn(8, 64, dtype=torch.float16, requires_grad=True)
    y = half(x)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == torch.float16  # float16 training stays float16
    mixed = SparseLinear(64, 32, backend="cusparselt")  # float32 weights, float16 activations
    mixed(torch.randn(8, 64, dtype=torch.float16))  # both operands in bfloat16
    assert len(cslt_on_cpu.mms) == 3  # the stand-in refuses operands of two dtypes
