"""Training on this project's sparse kernels: the ``kernels`` backend of bimask.backends.

CPU tests check the wiring and the errors; the GPU tests (marked) compare every GEMM of a
SparseLinear against the torch backend on the same weights, masks and permutation.
"""

import pytest
import torch

from bimask import SparseConv2d, SparseLinear, sparsify
from bimask.backends import layer_ops
from bimask.models import build_model


def _linear(method, **kw):
    torch.manual_seed(0)
    return SparseLinear(64, 32, method=method, permutation="greedy", **kw)


@pytest.mark.parametrize(
    "method,where",
    [
        ("bimask", "fwd sparse, dX sparse (pi), dW dense"),
        ("tmask", "fwd sparse, dX sparse, dW dense"),
        ("srste", "fwd sparse, dX dense, dW dense"),  # W*Mf is not N:M along out
        ("dense", "fwd dense, dX dense, dW dense"),
    ],
)
def test_kernels_backend_runs_each_gemm_where_its_mask_allows(method, where):
    layer = _linear(method, backend="kernels")
    assert layer_ops("linear", "kernels", layer=layer).describe() == where


def test_a_probe_that_swaps_in_the_forward_mask_sends_dx_to_the_dense_path():
    layer = _linear("bimask", backend="kernels")
    layer.backward_as_forward = True
    assert "dX dense" in layer_ops("linear", "kernels", layer=layer).describe()


def test_kernels_backend_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="conv2d runs on \\['torch'\\]"):
        SparseConv2d(16, 16, 3, backend="kernels")
    with pytest.raises(ValueError, match="unknown backend"):
        _linear("bimask", backend="tensorrt")
    with pytest.raises(ValueError, match="sparse tensor cores"):
        _linear("bimask", pattern="4:8", backend="kernels")  # at construction, not first use
    layer = _linear("bimask", backend="kernels")
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        layer(torch.randn(8, 64))


def test_sparsify_puts_convolutions_on_torch_and_says_so():
    model = build_model("cnn")
    decisions = sparsify(model, "2:4", "bimask", "greedy", backend="kernels")
    sparse = [d for d in decisions if d.sparse]
    convs = [d for d in sparse if d.kind == "Conv2d"]
    assert convs and all("conv2d GEMMs on torch" in d.reason for d in convs)
    mlp = sparsify(build_model("mlp"), "2:4", "bimask", "greedy", backend="kernels")
    linears = [d for d in mlp if d.sparse]
    assert linears and all(
        d.reason.endswith("fwd sparse, dX sparse (pi), dW dense") for d in linears
    )
    layers = {n: m for n, m in model.named_modules() if isinstance(m, SparseLinear)}
    assert all(m.backend == "kernels" for m in layers.values())
    assert all(m.backend == "torch" for m in model.modules() if isinstance(m, SparseConv2d))


def test_train_cli_refuses_the_kernels_backend_without_a_gpu(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from bimask.train.__main__ import main

    args = ["--dataset", "synthetic", "--model", "mlp", "--backend", "kernels"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "runs the sparse kernels on a GPU" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written


FAMILIES = ["sm80", pytest.param("sm90", marks=pytest.mark.hopper)]


def _pair(method, family, pattern="2:4"):
    """The same layer twice on CUDA: torch backend and kernels backend, one step of masks."""
    from kernels.training import KernelLinearOps

    ref = _linear(method, pattern=pattern).cuda()
    ref(torch.randn(4, 64, device="cuda"))  # masks and pi for the current weights
    spec = ref._spec
    ops = KernelLinearOps(
        pattern=pattern,
        sparse_forward=lambda: spec.masks is not None,
        sparse_backward=lambda: spec.backward_nm,
        perm=lambda: ref.perm if spec.uses_permutation else None,
        family=family,
    )
    return ref, ops


@pytest.mark.gpu
@pytest.mark.cupy
@pytest.mark.nvcc
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["bimask", "tmask", "srste"])
@pytest.mark.parametrize("pattern", ["2:4", "1:4"])
def test_kernel_gemms_match_torch_on_the_same_masks(family, method, pattern):
    ref, ops = _pair(method, family, pattern)
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(48, 64, device="cuda", generator=g)
    dy = torch.randn(48, 32, device="cuda", generator=g)
    w_f = ref.weight.detach() * ref.mask_forward
    w_b = ref.weight.detach() * ref.mask_backward

    def rel(a, b):
        return float((a.double() - b.double()).abs().max() / b.double().abs().max())

    y = ops.forward(x, w_f, ref.bias.detach())
    assert rel(y, x @ w_f.t() + ref.bias.detach()) < 1e-2
    dx = ops.input_grad(dy, w_b, x.shape)
    assert dx.shape == x.shape and rel(dx, dy @ w_b) < 1e-2


@pytest.mark.gpu
@pytest.mark.cupy
@pytest.mark.nvcc
def test_a_short_training_run_on_the_kernels(tmp_path):
    from bimask.train.config import TrainConfig
    from bimask.train.loop import train

    cfg = TrainConfig(
        model="mlp",
        dataset="synthetic",
        epochs=2,
        batch_size=64,
        backend="kernels",
        device="cuda",
        out=str(tmp_path / "run"),
    )
    summary = train(cfg)
    losses = [h["train_loss"] for h in summary["history"]]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert summary["backend"] == "kernels"
    assert all("GEMMs on torch" not in d["reason"] for d in summary["layers"])  # all Linear


@pytest.fixture
def kernels_on_cpu(monkeypatch):
    """The kernels backend with its two launches replaced by their CPU references (the same
    compressed bytes, the product of the decompressed operand): the glue runs for real."""
    from kernels import compress, training
    from kernels.reference import nm_gemm_reference
    from kernels.registry import VARIANTS

    calls = []

    def fake_compress(w, pattern, *, masked=False, error=None):
        assert masked and pattern == "2:4"
        assert error is not None  # training passes the device's violation flag: no sync
        return compress(w, pattern)

    def fake_gemm(a, b, config, *, perm=None, transpose_out=False, family="sm80", out_dtype=None):
        calls.append({"perm": perm is not None, "transpose_out": transpose_out, "k": a.k})
        return nm_gemm_reference(a, b, perm=perm, transpose_out=transpose_out, out_dtype=out_dtype)

    monkeypatch.setattr(training, "compress_gpu", fake_compress)
    monkeypatch.setattr(training, "nm_gemm", fake_gemm)
    monkeypatch.setattr(
        training.KernelLinearOps, "_setup", lambda self, t: ("sm80", VARIANTS["nm_spmm"].default())
    )
    return calls


@pytest.mark.parametrize("method", ["bimask", "tmask", "srste"])
def test_kernels_backend_glue_matches_torch_through_autograd(kernels_on_cpu, method):
    torch.manual_seed(0)
    ref = SparseLinear(64, 32, method=method, permutation="greedy", perm_every=1)
    got = SparseLinear(64, 32, method=method, permutation="greedy", perm_every=1, backend="kernels")
    got.load_state_dict(ref.state_dict())
    x = torch.randn(2, 12, 64)  # batch dimensions are flattened and restored
    x_ref, x_got = x.clone().requires_grad_(), x.clone().requires_grad_()
    dy = torch.randn(2, 12, 32)
    y_ref, y_got = ref(x_ref), got(x_got)
    (y_ref * dy).sum().backward()
    (y_got * dy).sum().backward()
    assert torch.equal(ref.perm, got.perm) and torch.equal(ref.mask_backward, got.mask_backward)

    def rel(a, b):
        return float((a - b).detach().abs().max() / b.detach().abs().max())

    assert y_got.shape == y_ref.shape and rel(y_got, y_ref) < 1e-2  # bfloat16 operands
    assert rel(x_got.grad, x_ref.grad) < 1e-2
    assert rel(got.weight.grad, ref.weight.grad) < 1e-6  # dense weight gradient: same math
    sparse_dx = [c for c in kernels_on_cpu if c["k"] == 32]  # K = out: the input gradient
    assert len(sparse_dx) == (0 if method == "srste" else 1)
    assert all(c["perm"] == (method == "bimask") and c["transpose_out"] for c in sparse_dx)


def test_kernels_backend_skips_the_gather_where_perm_is_identity(kernels_on_cpu):
    """A physically realised layer (pi reordered away) runs its input gradient without pi."""
    from bimask.physical import PhysicalPermutations

    torch.manual_seed(0)
    opts = dict(permutation="greedy", perm_every=1, perm_realisation="physical")
    layer = SparseLinear(64, 32, backend="kernels", **opts)
    model = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.Linear(32, 16))
    ref = torch.nn.Sequential(
        SparseLinear(64, 32, **opts), torch.nn.ReLU(), torch.nn.Linear(32, 16)
    )
    ref.load_state_dict(model.state_dict())
    for m in (model, ref):
        assert PhysicalPermutations(m).realise(step=0) == ["0"]
    assert layer.perm_is_identity and layer._ops().describe() == "fwd sparse, dX sparse, dW dense"
    x, dy = torch.randn(12, 64), torch.randn(12, 32)
    x_got, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    (layer(x_got) * dy).sum().backward()  # the layer alone: bfloat16 noise not through a ReLU
    (ref[0](x_ref) * dy).sum().backward()
    sparse_dx = [c for c in kernels_on_cpu if c["k"] == 32]
    assert len(sparse_dx) == 1 and not sparse_dx[0]["perm"]  # no gather of dY
    assert float((x_got.grad - x_ref.grad).abs().max() / x_ref.grad.abs().max()) < 1e-2


def test_the_kernels_backend_times_its_compressions_apart_from_the_gemms(
    kernels_on_cpu, monkeypatch
):
    """bimask.profile sees the kernels backend's two compressions as 'compress', so the GEMM
    sections hold the GEMMs alone (the in-kernel gather stays inside gemm_dx: it is the GEMM)."""
    from bimask.backends import kernels_ops
    from bimask.profile import profiling, section

    names = []

    def counted(name):
        names.append(name)
        return section(name)

    monkeypatch.setattr(kernels_ops, "section", counted)
    layer = SparseLinear(64, 32, method="bimask", permutation="greedy", backend="kernels")
    x = torch.randn(16, 64, requires_grad=True)
    with profiling() as prof:
        layer(x).sum().backward()
    assert names == ["compress", "compress"]  # W*Mf for the forward, (W*Mb)^T for dX
    assert {"compress", "gemm_fwd", "gemm_dx", "gemm_dw"} <= set(prof.totals_ms())
