"""What a CUDA device allows a kernel launch: compute capability and opt-in shared memory.

Kernels take the limit from here, never from a constant: A100 / H100 allow 163 / 227 KB of
dynamic shared memory per block, A10, L4, L40S and RTX cards only 99 KB. Tests on a CPU replace
``device_info`` (one function) to pretend a device.
"""

from __future__ import annotations

from dataclasses import dataclass

KB = 1024
# Opt-in shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin) by compute capability,
# from the CUDA C++ Programming Guide's table of technical specifications; used only where torch
# does not report the device's own value. Unknown capabilities get the smallest (99 KB).
SMEM_OPTIN_BY_CC: dict[tuple[int, int], int] = {
    (8, 0): 163 * KB,  # A100, A30
    (8, 6): 99 * KB,  # A10, A40, RTX 30xx
    (8, 7): 163 * KB,  # Jetson Orin
    (8, 9): 99 * KB,  # L4, L40S, RTX 40xx
    (9, 0): 227 * KB,  # H100, H200, H20
    (10, 0): 227 * KB,  # B200
    (12, 0): 99 * KB,  # RTX 50xx
    (12, 1): 99 * KB,  # DGX Spark
}
SMEM_OPTIN_SMALLEST = min(SMEM_OPTIN_BY_CC.values())


def smem_optin_for(cc: tuple[int, int]) -> int:
    """The table's opt-in shared memory per block for compute capability ``cc`` (bytes)."""
    return SMEM_OPTIN_BY_CC.get(tuple(cc), SMEM_OPTIN_SMALLEST)


@dataclass(frozen=True)
class DeviceInfo:
    cc: tuple[int, int]
    smem_optin: int  # bytes of dynamic shared memory one block may opt in to

    def __str__(self) -> str:
        return f"compute capability {self.cc[0]}.{self.cc[1]}, {self.smem_optin // KB} KB smem"


def device_info(device=None) -> DeviceInfo:
    """The CUDA device's (a torch.device or index) compute capability and opt-in shared memory
    per block."""
    import torch  # here, so that the registry can read the table without torch

    props = torch.cuda.get_device_properties(device)
    cc = (int(props.major), int(props.minor))
    optin = getattr(props, "shared_memory_per_block_optin", None)  # torch >= 2.2 reports it
    return DeviceInfo(cc, int(optin) if optin else smem_optin_for(cc))


def current_smem_limit() -> int | None:
    """The current CUDA device's opt-in shared memory per block, None without a device."""
    import torch

    if not torch.cuda.is_available():
        return None
    return device_info(torch.cuda.current_device()).smem_optin
