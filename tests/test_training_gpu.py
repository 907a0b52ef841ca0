"""Every training backend against the torch backend on a GPU (marked; skipped without one).

A bfloat16 SparseLinear runs one step on each backend from the same state (weights, masks, pi)
as a float32 torch-backend reference; outputs and the three gradients (dX, dW, db) must agree
within bfloat16 tolerance, for every method at 2:4 and 1:16. Shapes are multiples of 64 (what
cuSPARSELt and the kernels take on sm_80/sm_90).
"""

import functools

import pytest
import torch

from bimask import SparseLinear

IN, OUT, TOKENS = 256, 128, 128  # tokens: 2 x 64


@functools.cache
def cusparselt_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    if not torch.backends.cusparselt.is_available():
        return "this PyTorch build has no cuSPARSELt"
    if torch.cuda.get_device_capability() < (8, 0):
        return "cuSPARSELt needs compute capability 8.0+"
    return None


needs_cusparselt = pytest.mark.skipif(
    cusparselt_reason() is not None, reason=str(cusparselt_reason())
)


@functools.cache
def cutlass_reason() -> str | None:
    from kernels.registry import VARIANTS

    return VARIANTS["cutlass_sm90_sparse"].is_available()


needs_cutlass = pytest.mark.skipif(cutlass_reason() is not None, reason=str(cutlass_reason()))
BACKENDS = [
    "torch",
    pytest.param("kernels", marks=[pytest.mark.cupy, pytest.mark.nvcc]),
    pytest.param("cusparselt", marks=needs_cusparselt),
    pytest.param("cutlass_sm90", marks=needs_cutlass),
]


def _state(method: str, pattern: str) -> dict:
    """A bfloat16 layer's state after one training step's masks and pi search."""
    torch.manual_seed(0)
    base = SparseLinear(
        IN, OUT, method=method, pattern=pattern, permutation="greedy", perm_every=1000,
        device="cuda", dtype=torch.bfloat16,
    )  # fmt: skip
    base(torch.randn(4, IN, device="cuda", dtype=torch.bfloat16))
    return base.state_dict()


def _layer(state, method, pattern, backend, dtype):
    layer = SparseLinear(
        IN, OUT, method=method, pattern=pattern, permutation="greedy", perm_every=1000,
        backend=backend, device="cuda", dtype=dtype,
    )  # fmt: skip
    layer.load_state_dict(state)
    return layer


def _step(layer, x, dy):
    x = x.detach().to(layer.weight.dtype).requires_grad_()
    y = layer(x)
    (y.float() * dy).sum().backward()
    return {"y": y, "dx": x.grad, "dw": layer.weight.grad, "db": layer.bias.grad}


def rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["dense", "srste", "tmask", "bimask"])
@pytest.mark.parametrize("pattern", ["2:4", "1:16"])
def test_every_backend_matches_torch_within_bfloat16(backend, method, pattern):
    state = _state(method, pattern)
    ref = _layer(state, method, pattern, "torch", torch.float32)
    got = _layer(state, method, pattern, backend, torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(2, TOKENS // 2, IN, device="cuda", generator=g).bfloat16().float()
    dy = torch.randn(2, TOKENS // 2, OUT, device="cuda", generator=g)
    want, have = _step(ref, x, dy), _step(got, x, dy)
    if method != "dense":  # the same masks and pi on both sides
        assert torch.equal(ref.mask_forward, got.mask_forward)
        assert torch.equal(ref.mask_backward, got.mask_backward)
    for name in ("y", "dx", "dw", "db"):
        assert have[name].shape == want[name].shape, name
        assert rel(have[name], want[name]) < 1.5e-2, (name, rel(have[name], want[name]))


@pytest.mark.gpu
@needs_cusparselt
def test_cusparselt_compresses_once_per_weight(monkeypatch):
    calls = []
    compress = torch._cslt_compress

    def counted(a):
        calls.append(tuple(a.shape))
        return compress(a)

    monkeypatch.setattr(torch, "_cslt_compress", counted)
    layer = _layer(_state("bimask", "2:4"), "bimask", "2:4", "cusparselt", torch.bfloat16)
    x = torch.randn(TOKENS, IN, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    layer(x).sum().backward()
    layer(x).sum().backward()  # gradient accumulation: same weight and pi
    assert calls == [(OUT, IN), (IN, OUT)]
    layer.eval()
    with torch.no_grad():
        ys = [layer(x) for _ in range(3)]
    assert len(calls) == 2 and all(torch.equal(ys[0], y) for y in ys)  # eval reuses W*Mf
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    with torch.no_grad():
        layer(x)
        layer(x)
    assert len(calls) == 3  # the weight moved: W*Mf once more
