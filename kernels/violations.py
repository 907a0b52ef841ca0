"""N:M violations found by the GPU compress kernel in training, checked without a host sync per
step: every compression ORs into one int32 flag per device, read only when checked.

When it is checked is ``BIMASK_KERNEL_CHECK``: unset, every ``DEFAULT_EVERY`` compressions (one
host sync per that many); ``N``, every N; ``1``, after every compression (a sync each, a debug
mode that names the matrix); ``0``, only when ``check_violations()`` is called (the train loop at
the end of an epoch, through ``bimask.backends.check_backends``).
"""

from __future__ import annotations

import os

import torch

ENV = "BIMASK_KERNEL_CHECK"
DEFAULT_EVERY = 1024

_flags: dict[torch.device, torch.Tensor] = {}
_since_check = 0


def flag(device: torch.device) -> torch.Tensor:
    """The accumulated violation flag of ``device`` (one int32, zero while none was found)."""
    if device not in _flags:
        _flags[device] = torch.zeros(1, dtype=torch.int32, device=device)
    return _flags[device]


def check_every() -> int:
    """Compressions between automatic checks (0: never), from ``BIMASK_KERNEL_CHECK``."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_EVERY
    try:
        every = int(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: need a number (0 never, 1 every compression)") from None
    if every < 0:
        raise ValueError(f"{ENV}={raw!r}: need 0 or more")
    return every


def check_violations(what: str = "") -> None:
    """Read every device's flag (a host sync each), reset them, and raise a ValueError if any
    compression since the last check kept more than 2 of an aligned 4."""
    global _since_check
    _since_check = 0
    found = [d for d, f in _flags.items() if int(f.item())]
    for f in _flags.values():
        f.zero_()
    if found:
        where = what or f"a matrix compressed on {', '.join(map(str, found))} since the last check"
        raise ValueError(
            f"{where} keeps more than 2 of an aligned 4 (not N:M), so the sparse kernels would "
            f"drop values; run with {ENV}=1 to check every compression"
        )


def compressed(device: torch.device, what: str) -> None:
    """Count one compression on ``device`` and check if the policy says it is time."""
    global _since_check
    _since_check += 1
    every = check_every()
    if every and _since_check >= every:
        check_violations(what if every == 1 else "")
