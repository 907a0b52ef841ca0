"""Device limits on CPU: every tuning space restricted by the device's opt-in shared memory, and
every default launchable on the smallest device its family runs on."""

import pytest

from kernels import device, validate
from kernels.registry import GEMM_FAMILIES, VARIANTS

GEMMS = [name for roles in GEMM_FAMILIES.values() for name in roles.values()]
KB = 1024


@pytest.mark.parametrize("name", GEMMS)
@pytest.mark.parametrize("limit", [99 * KB, 163 * KB])
def test_a_smem_limit_drops_exactly_the_configs_above_it(name, limit):
    v = VARIANTS[name]
    full = v.space().configs()
    kept = v.space(smem_limit=limit).configs()
    assert kept == [c for c in full if v.smem(c.to_dict()) <= limit]
    assert 0 < len(kept) <= len(full)
    if name.endswith("sm90") or limit == 99 * KB:  # the sm80 space is built to fit 163 KB
        assert len(kept) < len(full), "the limit dropped nothing: the test could not fail"


@pytest.mark.parametrize("name", GEMMS)
def test_every_default_fits_the_smallest_device_of_its_family(name):
    v = VARIANTS[name]
    need = v.smem(v.default().to_dict())
    assert need <= v.smallest_smem_optin
    if name in GEMM_FAMILIES["sm80"].values():  # sm80 runs on 8.6 / 8.9 / 12.x: 99 KB
        assert v.smallest_smem_optin == 99 * KB and need <= 99 * KB
    else:  # the wgmma family runs on compute capability 9.0 only: 227 KB
        assert v.smallest_smem_optin == 227 * KB


def test_the_dense_default_used_to_need_more_than_a_99_kb_device_allows():
    v = VARIANTS["dense_gemm"]
    old = {**v.default().to_dict(), "BLOCK_K": 64, "STAGES": 3}  # the default before
    assert v.smem(old) > 99 * KB
    assert not v.space(smem_limit=99 * KB).allows(old)


def test_the_smem_table_says_what_the_programming_guide_says():
    assert device.smem_optin_for((8, 0)) == 163 * KB
    assert device.smem_optin_for((8, 6)) == device.smem_optin_for((8, 9)) == 99 * KB
    assert device.smem_optin_for((9, 0)) == 227 * KB
    assert device.smem_optin_for((12, 0)) == 99 * KB
    assert device.smem_optin_for((7, 7)) == 99 * KB  # unknown: the smallest, never too much


class _Props:
    def __init__(self, major, minor, optin=None):
        self.major, self.minor = major, minor
        if optin is not None:
            self.shared_memory_per_block_optin = optin


def test_device_info_prefers_the_device_s_own_limit(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: _Props(8, 6, 12345))
    assert device.device_info(0) == device.DeviceInfo((8, 6), 12345)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: _Props(8, 9))
    assert device.device_info(0) == device.DeviceInfo((8, 9), 99 * KB)  # older torch: table


def test_nm_gemm_refuses_a_config_the_device_cannot_launch(monkeypatch):
    import torch

    from kernels import ops
    from kernels.space import Config

    info = device.DeviceInfo((8, 6), 99 * KB)
    monkeypatch.setattr(device, "device_info", lambda d=None: info)
    monkeypatch.setattr(validate, "DEVICE_TYPE", "cpu")  # CPU tensors stand for device memory
    v = VARIANTS["dense_gemm"]
    big = Config.of({**v.default().to_dict(), "BLOCK_K": 64, "STAGES": 3})
    a = torch.randn(64, 64).bfloat16()
    with pytest.raises(ValueError, match=r"needs 110640 bytes of shared memory.*allows 101376"):
        ops.nm_gemm(a, a, big)


def test_suite_space_is_restricted_by_the_device(monkeypatch):
    from suite.backends import ours

    problem = type("P", (), {"pass_": "fwd", "perm": "-"})()
    monkeypatch.setattr(ours, "current_smem_limit", lambda: 99 * KB)
    space = ours._space("dense_gemm", problem)
    assert space.configs() == VARIANTS["dense_gemm"].space(smem_limit=99 * KB).configs()
    quick = ours._space(
        "dense_gemm", problem, ours.QUICK_TUNABLES["sm80"], ours.QUICK_RULES["sm80"]
    )
    assert quick.configs(), "no quick config launches on a 99 KB device"
