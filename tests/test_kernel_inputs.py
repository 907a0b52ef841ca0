"""Every operand check of the public kernel entries, on CPU tensors before any build or launch:
device, dtype, shape, contiguity, 16-byte alignment, index dtype, output, empty sizes."""

from dataclasses import replace

import pytest
import torch

from kernels import compress, device, ops, validate
from kernels.check import top2_of_4
from kernels.registry import VARIANTS
from kernels.space import Config

M, N, K = 70, 40, 96
SPARSE_CFG = VARIANTS["nm_spmm"].default()
SPLIT_CFG = Config.of({**SPARSE_CFG.to_dict(), "SPLIT_K": 2})


class _NoLaunch:
    """A launcher that fails the test if anything gets as far as building or launching."""

    def function(self, *args):
        raise AssertionError("built a kernel although the operands were invalid")

    def launch(self, *args):
        raise AssertionError("launched although the operands were invalid")


@pytest.fixture
def pretend(monkeypatch):
    """CPU tensors stand for an A100's memory; nothing may build or launch."""
    info = device.DeviceInfo((8, 0), device.smem_optin_for((8, 0)))
    monkeypatch.setattr(device, "device_info", lambda d=None: info)
    monkeypatch.setattr(validate, "DEVICE_TYPE", "cpu")
    monkeypatch.setitem(ops.LAUNCHERS, "none", _NoLaunch())


def _operands(m=M, n=N, k=K, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(0)
    w = top2_of_4(torch.randn(m, k, generator=g)).to(dtype)
    return w, compress(w, "2:4"), torch.randn(n, k, generator=g).to(dtype)


def _gemm(a, b, config=SPARSE_CFG, **kw):
    return ops.nm_gemm(a, b, config, launcher="none", **kw)


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """The same values 2 bytes past a 16-byte boundary (contiguous, but misaligned)."""
    flat = torch.empty(t.numel() + 8, dtype=t.dtype)[1:]
    flat = flat[: t.numel()].view(t.shape)
    flat.copy_(t)
    assert flat.data_ptr() % 16 and flat.is_contiguous()
    return flat


def test_compressed_operands_left_on_the_cpu_are_refused_with_the_fix():
    _, comp, b = _operands()
    ops.LAUNCHERS["none"] = _NoLaunch()
    try:
        with pytest.raises(ValueError, match=r"a\.values is on cpu.*\.cuda\(\).*kernels\.compress"):
            _gemm(comp, b)
    finally:
        del ops.LAUNCHERS["none"]


class _OnDevice(torch.Tensor):
    """A CPU tensor that reports another device (there is one CPU, and no GPU here)."""

    @property
    def device(self):
        return self.__dict__["_dev"]


def _on(t: torch.Tensor, dev: str) -> torch.Tensor:
    t = t.as_subclass(_OnDevice)
    t.__dict__["_dev"] = torch.device(dev)
    return t


def test_operands_on_two_devices_are_refused():
    a, b = torch.empty(4, 4), torch.empty(4, 4)
    assert validate.check_devices({"a": _on(a, "cuda:1"), "b": _on(b, "cuda:1")}).index == 1
    with pytest.raises(ValueError, match=r"different devices \(a on cuda:0, b on cuda:1\)"):
        validate.check_devices({"a": _on(a, "cuda:0"), "b": _on(b, "cuda:1")})


def test_an_int64_perm_is_refused_not_read_as_int32_pairs(pretend):
    _, comp, b = _operands()
    perm = torch.randperm(K)
    with pytest.raises(TypeError, match=r"perm is torch.int64.*perm.to\(torch.int32\)"):
        _gemm(comp, b, perm=perm)
    with pytest.raises(ValueError, match=r"perm has shape \(95,\), need \(96,\)"):
        _gemm(comp, b, perm=perm[:-1].int())
    with pytest.raises(ValueError, match="perm applies to the sparse kernel only"):
        _gemm(_operands()[0], b, VARIANTS["dense_gemm"].default(), perm=perm.int())


@pytest.mark.parametrize(
    "change,error,match",
    [
        (lambda a, c, b: (c, b.half()), TypeError, "A is torch.bfloat16 but B is torch.float16"),
        (lambda a, c, b: (c, b.float()), TypeError, "B is torch.float32; the tensor-core"),
        (lambda a, c, b: (c, b[:, :64]), ValueError, "B has K=64, A has K=96"),
        (lambda a, c, b: (c, b[0]), ValueError, "2-D A .M x K. and B"),
        (lambda a, c, b: (replace(c, meta=c.meta.long()), b), TypeError, "metadata is torch.int64"),
        (lambda a, c, b: (replace(c, rows=M + 40), b), ValueError, r"values have shape \(96, 48\)"),
        (lambda a, c, b: (replace(c, meta=c.meta[:, :2]), b), ValueError, "metadata has shape"),
        (lambda a, c, b: (c, b.t().contiguous().t()), ValueError, "b is not contiguous"),
        (lambda a, c, b: (c, _misaligned(b)), ValueError, "b starts at .* not 16-byte aligned"),
        (
            lambda a, c, b: (replace(c, values=_misaligned(c.values)), b),
            ValueError,
            "a.values starts at .* not 16-byte aligned",
        ),
        (lambda a, c, b: (a.float(), b), TypeError, "A is torch.float32"),
        (lambda a, c, b: (a[:, ::2], b[:, ::2]), ValueError, "a is not contiguous"),
        (lambda a, c, b: ("A", b), TypeError, "A must be a Compressed or a torch tensor"),
    ],
)
def test_bad_operands_are_clear_errors_before_any_launch(pretend, change, error, match):
    a, comp, b = _operands()
    lhs, rhs = change(a, comp, b)
    config = SPARSE_CFG if not isinstance(lhs, torch.Tensor) else VARIANTS["dense_gemm"].default()
    with pytest.raises(error, match=match):
        _gemm(lhs, rhs, config)


def test_out_must_have_the_dtype_and_shape_the_kernel_writes(pretend):
    _, comp, b = _operands()
    with pytest.raises(TypeError, match=r"writes torch.float32 \(split-K accumulates"):
        _gemm(comp, b, SPLIT_CFG, out=torch.empty(M, N, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=r"writes torch.float32 \(out_dtype=torch.float32\)"):
        _gemm(comp, b, out_dtype=torch.float32, out=torch.empty(M, N, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="out is torch.float32, .*torch.bfloat16 .*pass out_dtype"):
        _gemm(comp, b, out=torch.empty(M, N))
    with pytest.raises(ValueError, match=r"out has shape \(70, 40\), the GEMM writes \(40, 70\)"):
        _gemm(comp, b, transpose_out=True, out=torch.empty(M, N, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="out is not contiguous"):
        _gemm(comp, b, out=torch.empty(N, M, dtype=torch.bfloat16).t())
    with pytest.raises(TypeError, match="out_dtype must be None, torch.float32 or"):
        _gemm(comp, b, out_dtype=torch.float16)


def test_configs_are_checked_against_the_variant(pretend):
    _, comp, b = _operands()
    with pytest.raises(ValueError, match="must set exactly"):
        _gemm(comp, b, Config.of({"BLOCK_M": 128}))
    with pytest.raises(ValueError, match="breaks a restriction"):
        _gemm(comp, b, Config.of({**SPARSE_CFG.to_dict(), "WARPS_M": 4, "BLOCK_M": 64}))


@pytest.mark.parametrize("m,n", [(0, N), (M, 0)])
def test_an_empty_m_or_n_returns_an_empty_result_without_a_launch(pretend, m, n):
    a, comp, b = _operands(m=max(m, 1), n=max(n, 1))
    comp = compress(a[:m], "2:4")
    out = _gemm(comp, b[:n])
    assert out.shape == (m, n) and out.dtype == torch.bfloat16
    out = _gemm(a[:m], b[:n], VARIANTS["dense_gemm"].default(), transpose_out=True)
    assert out.shape == (n, m)


def test_k_zero_is_a_zero_result_without_a_launch(pretend):
    a = torch.empty(M, 0, dtype=torch.bfloat16)
    b = torch.empty(N, 0, dtype=torch.bfloat16)
    out = _gemm(a, b, VARIANTS["dense_gemm"].default(), out_dtype=torch.float32)
    assert out.shape == (M, N) and out.dtype == torch.float32 and not out.any()


def test_compress_gpu_checks_its_matrix_before_any_launch(pretend):
    w = torch.randn(64, 64).bfloat16()
    with pytest.raises(TypeError, match="w is torch.float32"):
        ops.compress_gpu(w.float(), "2:4", launcher="none")
    with pytest.raises(ValueError, match="2-D"):
        ops.compress_gpu(w[0], "2:4", launcher="none")
    with pytest.raises(ValueError, match="threads=100"):
        ops.compress_gpu(w, "2:4", launcher="none", threads=100)
    empty = ops.compress_gpu(w[:0], "2:4", launcher="none")
    assert empty.values.shape == (0, 32) and empty.rows == 0


def test_compress_gpu_refuses_a_cpu_matrix():
    with pytest.raises(ValueError, match="w is on cpu.*move it with .cuda"):
        ops.compress_gpu(torch.randn(64, 64).bfloat16(), "2:4")
