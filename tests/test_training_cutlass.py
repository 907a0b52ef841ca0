"""Training on the CUTLASS sm90 family: the ``cutlass_sm90`` backend of bimask.backends.

CPU tests run the backend's glue for real with kernels.cutlass_ops's two entries swapped for CPU
references of their semantics (compress checks the 2:4 mask and keeps the masked matrix with
its metadata block; the GEMM is A . B^T, m x n row-major, 16-bit). The GPU tests
(tests/test_training_gpu.py) compare every backend against torch on a real Hopper device.
"""

from types import SimpleNamespace

import pytest
import torch
from backend_pairs import pair, rel
from backend_pairs import run as _run

from bimask import SparseLinear, sparsify
from bimask.backends import cutlass_ops as backend
from bimask.backends import layer_ops
from bimask.models import build_model
from bimask.profile import profiling
from kernels import cutlass_ops
from kernels.cutlass_family import DEFAULT

HALF = (torch.bfloat16, torch.float16)


class FakeCutlass:
    """CPU stand-ins for kernels.cutlass_ops.cutlass_compress / cutlass_gemm, recording calls."""

    def __init__(self):
        self.compressed, self.gemms = [], []

    def compress(self, a, config, *, check_pattern=True):
        assert a.dim() == 2 and a.is_contiguous() and a.dtype in HALF
        rows, k = a.shape
        assert k % 16 == 0
        assert ((a.reshape(rows, k // 4, 4) != 0).sum(-1) <= 2).all(), "not 2:4"
        assert not check_pattern  # the training path never reads A on the host
        self.compressed.append((tuple(a.shape), cutlass_ops.meta_block(config)))
        return SimpleNamespace(
            values=a.clone(), rows=rows, k=k, meta_k=cutlass_ops.meta_block(config)
        )

    def gemm(self, a, b, config, *, out=None, out_dtype=None):
        assert out is None and out_dtype is None
        assert b.dim() == 2 and b.is_contiguous() and b.dtype == a.values.dtype
        assert b.shape[1] == a.k and b.shape[0] % 8 == 0  # N: 16-byte output rows
        assert a.meta_k == cutlass_ops.meta_block(config), "compressed for another layout"
        self.gemms.append({"m": a.rows, "k": a.k, "n": b.shape[0], "config": dict(config.params)})
        return (a.values.float() @ b.float().t()).to(b.dtype)


@pytest.fixture
def fake(monkeypatch):
    f = FakeCutlass()
    monkeypatch.setattr(cutlass_ops, "cutlass_compress", f.compress)
    monkeypatch.setattr(cutlass_ops, "cutlass_gemm", f.gemm)
    monkeypatch.setattr(backend, "_ALLOW_CPU", True)  # the test-only switch
    return f


def _pair(method, pattern="2:4", permutation="greedy", **kw):
    return pair("cutlass_sm90", method, pattern, permutation, **kw)


@pytest.mark.parametrize("pattern", ["2:4", "1:8"])
@pytest.mark.parametrize("method", ["dense", "srste", "tmask", "bimask"])
@pytest.mark.parametrize("tokens", [12, 5])  # 2 x 5: padded to a multiple of 8
def test_cutlass_glue_matches_torch_through_autograd(fake, method, pattern, tokens):
    ref, got = _pair(method, pattern, perm_every=1)
    x, dy = torch.randn(2, tokens, 64), torch.randn(2, tokens, 32)
    y_ref, dx_ref = _run(ref, x, dy)
    y_got, dx_got = _run(got, x, dy)
    assert torch.equal(ref.perm, got.perm)
    assert y_got.shape == y_ref.shape and y_got.dtype == torch.float32  # float32 training
    assert dx_got.shape == dx_ref.shape
    assert rel(y_got, y_ref) < 1e-2 and rel(dx_got, dx_ref) < 1e-2  # bfloat16 operands
    assert rel(got.weight.grad, ref.weight.grad) < 1e-6  # dense weight gradient: same math
    assert all(g["n"] == -(-2 * tokens // 8) * 8 for g in fake.gemms)
    fwd = [g for g in fake.gemms if g["k"] == 64]  # K = in: the forward (m = out)
    dx = [g for g in fake.gemms if g["k"] == 32]  # K = out: the input gradient (m = in)
    assert len(fwd) == (0 if method == "dense" else 1) and all(g["m"] == 32 for g in fwd)
    assert len(dx) == (1 if method in ("tmask", "bimask") else 0)  # srste's dX is not N:M
    assert all(g["m"] == 64 and g["config"] == DEFAULT for g in dx)


@pytest.mark.parametrize(
    "method,where",
    [
        ("bimask", "fwd sparse, dX sparse (pi gather), dW dense (CUTLASS sm90)"),
        ("srste", "fwd sparse, dX dense, dW dense (CUTLASS sm90)"),
    ],
)
def test_describe_says_where_each_gemm_runs(method, where):
    layer = SparseLinear(64, 32, method=method, backend="cutlass_sm90")
    assert layer_ops("linear", "cutlass_sm90", layer=layer).describe() == where


def test_compressed_once_per_weight_and_per_metadata_layout(fake):
    class Tuned:  # the forward tuned to a 128-deep tile: another metadata layout
        def lookup(self, backend_, pass_, m, n, k, pattern, dtype, realisation=None):
            assert backend_ == "cutlass_sm90"
            config = {**DEFAULT, "TILE_K": 128, "perm_realisation": "-"}
            return SimpleNamespace(config=config) if pass_ == "fwd" else None

    _, layer = _pair("bimask", perm_every=100)
    x, dy = torch.randn(16, 64), torch.randn(16, 32)
    with profiling() as prof:
        _run(layer, x, dy)
        _run(layer, x, dy)  # same weight, same pi: no new compression
    assert fake.compressed == [((32, 64), 64), ((64, 32), 64)]
    assert {"compress", "gather"} <= set(prof.totals_ms())
    layer.tuned = Tuned()
    _run(layer, x, dy)
    assert fake.compressed[2:] == [((32, 64), 128)]  # the forward's layout changed, dX's did not
    assert fake.gemms[-2]["config"]["TILE_K"] == 128


def test_a_tuned_config_outside_the_family_is_an_error_naming_the_file(fake):
    class Tuned:
        where = "tuned.json"

        def lookup(self, *args, **kw):
            return SimpleNamespace(config={**DEFAULT, "TILE_M": 96})

    _, layer = _pair("bimask")
    layer.tuned = Tuned()
    with pytest.raises(ValueError, match=r"tuned configs tuned.json: cutlass_sm90 entry .*TILE_M"):
        layer(torch.randn(8, 64))
    assert fake.compressed == []


def test_bad_layers_and_devices_fail_before_any_op(fake, monkeypatch):
    with pytest.raises(ValueError, match="4:8 can keep 4 of an aligned 4.*CUTLASS sm90"):
        SparseLinear(64, 32, pattern="4:8", backend="cutlass_sm90")
    with pytest.raises(ValueError, match=r"CUTLASS sm90 needs in and out features .*\(40, 64\)"):
        SparseLinear(64, 40, backend="cutlass_sm90")
    monkeypatch.setattr(backend, "_ALLOW_CPU", False)
    layer = SparseLinear(64, 32, backend="cutlass_sm90")
    with pytest.raises(ValueError, match="runs on CUDA tensors; use backend='torch' on the CPU"):
        layer(torch.randn(8, 64))
    assert fake.compressed == [] and fake.gemms == []


def test_sparsify_puts_linears_on_cutlass():
    mlp = sparsify(build_model("mlp"), "2:4", "bimask", "greedy", backend="cutlass_sm90")
    linears = [d for d in mlp if d.sparse]
    assert linears and all(d.reason.endswith("(CUTLASS sm90)") for d in linears)


def test_train_cli_offers_the_backend_and_refuses_it_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from bimask.train.__main__ import main

    args = ["--dataset", "synthetic", "--model", "mlp", "--backend", "cutlass_sm90"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "--backend cutlass_sm90 runs the sparse kernels on a GPU" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "backend,library", [("cusparselt", "cuSPARSELt"), ("cutlass_sm90", "CUTLASS sm90")]
)
def test_sparsify_leaves_a_layer_the_library_refuses_on_torch_and_says_why(backend, library):
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 40), torch.nn.ReLU(), torch.nn.Linear(40, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    )  # fmt: skip
    decisions = {d.name: d for d in sparsify(model, "2:4", "bimask", "greedy", backend=backend)}
    for name, shape in (("0", "(40, 64) (out_features=40)"), ("2", "(64, 40) (in_features=40)")):
        d = decisions[name]
        assert d.sparse and "on torch (masked dense math)" in d.reason, d.reason
        assert f"GEMMs on torch: {library} needs in and out features" in d.reason
        assert shape in d.reason
    assert decisions["4"].reason.endswith(f"dW dense ({library})")
    x = torch.randn(4, 64, requires_grad=True)
    model[0](x).sum().backward()  # the fallback layers train on the CPU (torch)
    assert x.grad is not None


@pytest.mark.parametrize("backend", ["cusparselt", "cutlass_sm90"])
def test_sparsify_refuses_a_pattern_the_library_cannot_run_before_any_change(backend):
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 10))
    with pytest.raises(ValueError, match="4:8 can keep 4 of an aligned 4"):
        sparsify(model, "4:8", "bimask", "greedy", backend=backend)
    assert type(model[0]) is torch.nn.Linear  # nothing changed
    sparsify(model, "4:8", "dense", backend=backend)  # dense: no sparse GEMMs to refuse


def test_an_attention_block_the_library_refuses_stays_on_torch():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(40, 2, batch_first=True)
            self.head = torch.nn.Linear(40, 10)

        def forward(self, x):
            return self.head(self.attn(x, x, x)[0])

    model = Block()
    decisions = sparsify(model, "2:4", "bimask", "greedy", backend="cusparselt")
    attention = [d for d in decisions if d.name.startswith("attn") and d.sparse]
    assert attention and all("masked dense math" in d.gemms for d in attention), attention
    model(torch.randn(2, 5, 40)).sum().backward()  # runs on the CPU: nothing reached cuSPARSELt
