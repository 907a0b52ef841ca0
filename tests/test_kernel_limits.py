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


# 512 threads (4x4 warps) leave 128 registers a thread; ptxas (CUDA 13.0, sm_80) measured:
SPILLING = [
    {"BLOCK_M": 256, "BLOCK_N": 256, "WARPS_M": 4, "WARPS_N": 4},  # 128 accumulators: 1,872 B
    {"BLOCK_M": 128, "BLOCK_N": 256, "WARPS_M": 4, "WARPS_N": 4},  # 64 + 32 B fragments: 36 B
    {"BLOCK_M": 256, "BLOCK_N": 128, "WARPS_M": 4, "WARPS_N": 4, "STAGES": 4},  # 64 + 16: 4 B
]
NOT_SPILLING = [
    {"BLOCK_M": 128, "BLOCK_N": 128, "WARPS_M": 4, "WARPS_N": 4},  # 32 + 16 at 512 threads
    {"BLOCK_M": 128, "BLOCK_N": 256, "WARPS_M": 4, "WARPS_N": 2},  # 128 + 64 at 256: 255 regs
]


def _sm80(name, tiles, **more):
    v = VARIANTS[name]
    return {**v.default().to_dict(), "BLOCK_K": 64, "STAGES": 2, **tiles, **more}


@pytest.mark.parametrize("name", list(GEMM_FAMILIES["sm80"].values()))
def test_the_register_rule_removes_the_spilling_corner_and_keeps_its_neighbours(name):
    space = VARIANTS[name].space()
    for tiles in SPILLING:
        assert not space.allows(_sm80(name, tiles)), tiles
    for tiles in NOT_SPILLING:
        assert space.allows(_sm80(name, tiles)), tiles
    from kernels.resources import REG_RESERVE, mma_registers, register_budget

    for c in space:  # the rule holds over the whole space, not just the measured points
        d = c.to_dict()
        assert mma_registers(d) + REG_RESERVE <= register_budget(d["WARPS_M"] * d["WARPS_N"] * 32)


def test_spill_bytes_are_read_from_the_ptxas_report():
    from kernels.build import spill_bytes

    log = (
        "ptxas info    : Function properties for nm_gemm\n"
        "    1872 bytes stack frame, 1872 bytes spill stores, 1500 bytes spill loads\n"
        "ptxas info    : Used 64 registers, used 1 barriers, 424 bytes cmem[0]\n"
    )
    assert spill_bytes(log) == 3372
    assert spill_bytes(log.replace("1872 bytes spill", "0 bytes spill").replace("1500", "0")) == 0
    assert spill_bytes("") is None  # no report: unknown, not zero


def test_cli_compile_fails_on_a_spilling_build(tmp_path, monkeypatch, capsys):
    from kernels import __main__ as cli
    from kernels.build import Built

    cubin = tmp_path / "k.cubin"
    cubin.write_bytes(b"")
    cubin.with_suffix(".log").write_text(
        "    8 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n"
    )

    def fake_compile(v, config, arch, *a, **kw):
        return Built(v.name, arch, config, cubin, True)

    monkeypatch.setattr(cli, "compile_variant", fake_compile)
    monkeypatch.setattr(cli, "sass_instructions", lambda c: {"HMMA.SP.16832": 1, "HMMA.16816": 1})
    assert cli.main(["compile", "--arch", "sm_80", "--default-only"]) == 1
    out = capsys.readouterr().out
    assert "FAIL nm_spmm sm_80" in out and "ptxas spills 16 bytes" in out


@pytest.mark.nvcc
def test_no_default_and_no_corner_spills():
    """What ``python -m kernels compile`` checks: every default for its targets, and the corners
    of each GEMM space (the sm90 ones are built anyway by the wgmma pipelining test)."""
    from kernels.build import compile_variant

    for name, v in VARIANTS.items():
        for arch in v.archs:
            built = compile_variant(v, v.default(), arch)
            assert built.spill_bytes == 0, f"{name} {arch}: {built.ptxas_log[-400:]}"
    for family, arch in (("sm80", "sm_80"), ("sm90", "sm_90a")):
        for name in GEMM_FAMILIES[family].values():
            v = VARIANTS[name]
            for config in v.corners():
                built = compile_variant(v, config, arch)
                assert built.spill_bytes == 0, f"{name} {config.to_json()}: {built.ptxas_log}"


@pytest.mark.nvcc
def test_the_excluded_corner_does_spill_so_the_check_can_fail():
    from kernels.build import compile_variant
    from kernels.space import Config

    v = VARIANTS["nm_spmm"]
    corner = Config.of({**_sm80("nm_spmm", SPILLING[0]), "BLOCK_K": 32})
    assert compile_variant(v, corner, "sm_80").spill_bytes > 0


def test_dynamic_shared_memory_is_opened_once_per_function():
    """Issue 11.6: the opt-in attribute is a driver call; a launch sets it once per function
    (and again only when a larger request comes), never on every launch."""
    from kernels.launch import ensure_dynamic_smem

    class Fn:  # stands in for a loaded CUDA function
        pass

    fn, other, calls = Fn(), Fn(), []
    for smem in (100_000, 100_000, 64_000, 100_000):
        ensure_dynamic_smem(fn, smem, calls.append)
    ensure_dynamic_smem(fn, 120_000, calls.append)
    ensure_dynamic_smem(other, 40_000, calls.append)  # under the default: nothing to open
    ensure_dynamic_smem(other, 70_000, calls.append)
    assert calls == [100_000, 120_000, 70_000]


def test_staged_epilogue_needs_the_larger_of_the_stages_and_the_output_tile():
    from kernels.resources import gemm_smem

    c = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "STAGES": 2, "SMEM_PAD": 8}
    stages = gemm_smem(c, True)
    assert stages == 2 * (128 * 24 * 2 + 128 * 40 * 2 + 4 * 1 * 32 * 4)
    assert gemm_smem({**c, "EPI_SMEM": 0}, True) == stages
    assert gemm_smem({**c, "EPI_SMEM": 1}, True) == 128 * 128 * 4 + 128 * 16  # fp32 tile + pads
    deep = {**c, "BLOCK_K": 128, "STAGES": 4}
    assert gemm_smem({**deep, "EPI_SMEM": 1}, True) == gemm_smem(deep, True)  # stages are larger
