"""Device records: NVML on NVIDIA GPUs (nvidia-ml-py), CPU model and threads otherwise."""

from __future__ import annotations

import os
import platform
from functools import cache

import torch

from bimask.machine import cpu_model

# NVML throttle-reason bits that mean "slowed down"; idle (0x1) and app clocks (0x2) do not.
_THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}


def cpu_record() -> dict:
    return {
        "kind": "cpu",
        "name": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "driver": platform.release(),
    }


def _nvml():
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def gpu_record(index: int = 0) -> dict:
    """Name, driver, clocks, power, temperature and throttle reasons of GPU ``index``."""
    rec = {
        "kind": "cuda",
        "name": torch.cuda.get_device_name(index),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
    }
    try:
        nv = _nvml()
        h = nv.nvmlDeviceGetHandleByIndex(index)
        reasons = nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        rec.update(
            driver=nv.nvmlSystemGetDriverVersion(),
            sm_clock_mhz=nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            mem_clock_mhz=nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            power_w=nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
            temperature_c=nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            throttle=[name for bit, name in _THROTTLE_BITS.items() if reasons & bit],
        )
    except Exception as err:  # no nvidia-ml-py, or NVML unavailable: record why
        rec.update(driver=f"cuda {torch.version.cuda}", nvml_error=type(err).__name__)
    return rec


def capture(device: str = "cpu") -> dict:
    """A snapshot of the device's state, taken before and after each measured block."""
    return gpu_record() if device.startswith("cuda") else cpu_record()


@cache
def fingerprint(device: str = "cpu") -> dict:
    """What identifies a device for caching: results from another fingerprint never mix."""
    rec = capture(device)
    return {
        "device": rec["name"],
        "driver": rec.get("driver", ""),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
    }


def throttled(before: dict, after: dict) -> bool:
    """True when the SM clock dropped by more than 10% or a throttle reason appeared."""
    if before.get("kind") != "cuda":
        return False
    if after.get("throttle"):
        return True
    b, a = before.get("sm_clock_mhz"), after.get("sm_clock_mhz")
    return bool(b and a and a < 0.9 * b)
