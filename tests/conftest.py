"""Device markers, probed once: GPU tests are skipped with a reason on machines without one."""

from __future__ import annotations

import functools
import os
import shutil

import pytest
import torch


@functools.cache
def cuda_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


@functools.cache
def nvcc_reason() -> str | None:
    return None if shutil.which("nvcc") else "nvcc not found on PATH"


@functools.cache
def cupy_reason() -> str | None:
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except ImportError:
        return "cupy is not installed (pip install -e '.[gpu]')"
    except Exception as err:  # no driver / no device: CUDARuntimeError and friends
        return f"cupy cannot reach a device: {type(err).__name__}"
    return None


@functools.cache
def hopper_reason() -> str | None:
    if reason := cuda_reason():
        return reason
    cc = torch.cuda.get_device_capability()
    if cc != (9, 0):
        return f"the wgmma kernels need a Hopper GPU (compute capability 9.0), this one is {cc}"
    return None


@functools.cache
def cutlass_reason() -> str | None:
    from kernels import cutlass_headers

    return cutlass_headers.missing_reason()


@functools.cache
def slow_reason() -> str | None:
    if os.environ.get("BIMASK_RUN_SLOW") == "1":
        return None
    return "slow (minutes of nvcc or more): set BIMASK_RUN_SLOW=1 to run it"


_PROBES = {
    "gpu": cuda_reason,
    "nvcc": nvcc_reason,
    "cupy": cupy_reason,
    "hopper": hopper_reason,
    "cutlass": cutlass_reason,
    "slow": slow_reason,
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name, probe in _PROBES.items():
            if name in item.keywords and (reason := probe()):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
