"""The kernels backend's training step never waits for the GPU: the compress kernel's N:M
violation flag accumulates on the device and is read only when checked (CPU tensors stand for
device memory; the launcher is a stand-in that can raise the flag as the kernel would)."""

import pytest
import torch

from kernels import device, ops, validate, violations
from kernels.training import KernelLinearOps, check_violations

SYNCS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__")


class _FakeKernels:
    """Builds nothing; a compress launch raises the violation flag when ``violate`` is set."""

    def __init__(self):
        self.violate, self.launches = False, []

    def function(self, name, *args):
        return name

    def launch(self, fn, grid, block, smem, args, stream):
        self.launches.append(fn)
        if fn.startswith("nm_compress") and self.violate:
            flag = violations.flag(torch.device("cpu"))
            assert args[-1] == ("ptr", flag.data_ptr()), "compress wrote to another flag"
            flag.fill_(1)  # the kernel's atomicOr, on the device


@pytest.fixture
def kernels(monkeypatch):
    info = device.DeviceInfo((8, 0), device.smem_optin_for((8, 0)))
    monkeypatch.setattr(device, "device_info", lambda d=None: info)
    monkeypatch.setattr(validate, "DEVICE_TYPE", "cpu")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: type("S", (), {"cuda_stream": 0}))
    fake = _FakeKernels()
    monkeypatch.setitem(ops.LAUNCHERS, "cupy", fake)
    monkeypatch.setattr(violations, "_flags", {})
    monkeypatch.setattr(violations, "_since_check", 0)
    monkeypatch.delenv(violations.ENV, raising=False)
    return fake


def _forbid_syncs(monkeypatch):
    def sync(*args, **kw):
        raise AssertionError("a host sync in the training hot path")

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, sync)
    monkeypatch.setattr(torch.cuda, "synchronize", sync)


def _ops(perm=None):
    return KernelLinearOps(
        pattern="2:4",
        sparse_forward=lambda: True,
        sparse_backward=lambda: True,
        perm=lambda: perm,
        family="sm80",
    )


def _step(ops_):
    w = torch.randn(32, 64).bfloat16()
    x, dy = torch.randn(8, 64).bfloat16(), torch.randn(8, 32).bfloat16()
    y = ops_.forward(x, w, None)
    dx = ops_.input_grad(dy, w, x.shape)
    assert y.shape == (8, 32) and dx.shape == (8, 64)


def test_a_training_step_reads_nothing_back_from_the_device(kernels, monkeypatch):
    kernels.violate = True  # even a violation does not make the step wait
    with monkeypatch.context() as m:
        _forbid_syncs(m)
        for _ in range(3):
            _step(_ops())
            _step(_ops(perm=torch.randperm(32)))
    assert kernels.launches.count("nm_compress_masked") == 12
    with pytest.raises(ValueError, match="keeps more than 2 of an aligned 4.*BIMASK_KERNEL_CHECK"):
        check_violations()
    check_violations()  # the flag was reset by the check


def test_without_a_violation_the_check_passes(kernels):
    _step(_ops())
    check_violations()
    assert int(violations.flag(torch.device("cpu")).item()) == 0


def test_the_debug_mode_checks_every_compression_and_names_it(kernels, monkeypatch):
    monkeypatch.setenv(violations.ENV, "1")
    kernels.violate = True
    with pytest.raises(ValueError, match=r"the forward's W\*Mf of shape \(32, 64\) keeps more"):
        _step(_ops())


def test_the_periodic_check_syncs_once_per_n_compressions(kernels, monkeypatch):
    monkeypatch.setenv(violations.ENV, "4")
    reads = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or real_item(t))
    for _ in range(4):
        _step(_ops())  # two compressions a step
    assert len(reads) == 2  # after the 4th and the 8th compression, one flag each
    monkeypatch.setenv(violations.ENV, "0")
    _step(_ops())
    assert len(reads) == 2


def test_a_bad_check_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(violations.ENV, "often")
    with pytest.raises(ValueError, match="BIMASK_KERNEL_CHECK='often': need a number"):
        violations.check_every()


def test_compress_gpu_without_a_flag_still_reads_it_at_once(kernels):
    kernels.violate = False
    w = torch.randn(32, 64).bfloat16()
    ops.compress_gpu(w, "2:4", masked=True)  # its own flag: read, nothing set
    with pytest.raises(TypeError, match="one int32 element"):
        ops.compress_gpu(w, "2:4", masked=True, error=torch.zeros(2, dtype=torch.int32))


def test_the_backend_seam_raises_what_the_kernels_found(kernels):
    from bimask.backends import check_backends

    kernels.violate = True
    _step(_ops())
    with pytest.raises(ValueError, match="not N:M"):
        check_backends()
