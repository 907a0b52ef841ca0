"""Thin launchers: load a compiled variant and run it on device arrays.

Backends behind one interface (``LAUNCHERS``): CuPy (primary) and PyCUDA (optional extra). Both
take the same cubin that ``kernels.build`` produces, so the compile cache is shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from kernels.build import compile_variant
from kernels.registry import VARIANTS, KernelVariant
from kernels.space import Config


def arch_of(cc: tuple[int, int]) -> str:
    """The nvcc arch to build for a device (sm_90a for Hopper, to allow wgmma paths)."""
    return "sm_90a" if cc == (9, 0) else f"sm_{cc[0]}{cc[1]}"


@dataclass(frozen=True)
class GemmLaunch:
    """Grid, block and dynamic shared memory of one GEMM launch."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    smem: int


def gemm_launch(variant: KernelVariant, config: Config, m: int, n: int) -> GemmLaunch:
    if variant.threads is None or variant.smem is None:
        raise ValueError(f"{variant.name} is not a GEMM kernel")
    c = config.to_dict()
    grid = (math.ceil(n / c["BLOCK_N"]), math.ceil(m / c["BLOCK_M"]), c["SPLIT_K"])
    return GemmLaunch(grid, (variant.threads(c), 1, 1), variant.smem(c))


def _cubin(variant_name: str, extra: tuple, config: Config, dtype: str, arch: str):
    """(cubin path, entry symbol) of a variant config, built or taken from the compile cache."""
    variant = VARIANTS[variant_name]
    return compile_variant(variant, config, arch, dtype, dict(extra)).cubin, variant.symbol


# the dynamic shared memory each loaded function was opened up to (a launch asks once per
# function, not on every launch: the attribute call is a driver round trip)
# (keyed by id, the function held too, so that a freed function's id cannot pass its limit on)
_SMEM_SET: dict[int, tuple[object, int]] = {}
DEFAULT_DYNAMIC_SMEM = 48 * 1024  # what every function may use without the opt-in attribute


def ensure_dynamic_smem(fn, smem: int, set_limit) -> None:
    """Raise ``fn``'s dynamic shared-memory limit to ``smem`` (via ``set_limit``) when it needs
    more than the default and more than it was already given; a no-op otherwise."""
    _, have = _SMEM_SET.get(id(fn), (fn, DEFAULT_DYNAMIC_SMEM))
    if smem > have:
        set_limit(smem)
        _SMEM_SET[id(fn)] = (fn, smem)


def _cupy_value(kind: str, v):
    """A kernel argument as CuPy passes it: pointers and ints as numpy scalars, a tensor map
    (128 bytes) as a one-element host array of that size, which CuPy (13.x and 14.x) copies by
    value into the kernel's parameter space (a structured scalar works on 14.x only)."""
    import numpy as np

    if kind == "ptr":
        return np.uint64(v)
    if kind == "tmap":
        return np.frombuffer(v, dtype=np.dtype((np.void, len(v))))
    return np.int32(v)


class CupyLauncher:
    name = "cupy"

    @staticmethod
    def available() -> str | None:
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except ImportError:
            return "cupy is not installed (pip install -e '.[gpu]')"
        except Exception as err:
            return f"cupy cannot reach a device: {type(err).__name__}"
        return None

    @staticmethod
    @cache
    def function(variant_name: str, extra: tuple, config: Config, dtype: str, arch: str):
        import cupy

        cubin, symbol = _cubin(variant_name, extra, config, dtype, arch)
        return cupy.RawModule(path=str(cubin)).get_function(symbol)

    def launch(self, fn, grid, block, smem: int, args, stream: int) -> None:
        import cupy

        ensure_dynamic_smem(fn, smem, lambda n: setattr(fn, "max_dynamic_shared_size_bytes", n))
        values = [_cupy_value(kind, v) for kind, v in args]
        with cupy.cuda.ExternalStream(stream):  # torch's current stream: events time this work
            fn(grid, block, tuple(values), shared_mem=smem)


class PycudaLauncher:
    """The same cubins through PyCUDA (``pip install -e '.[pycuda]'``)."""

    name = "pycuda"

    @staticmethod
    def available() -> str | None:
        try:
            import pycuda.driver  # noqa: F401
        except ImportError as err:
            return f"pycuda is not usable here: {err}"
        return None

    @staticmethod
    @cache
    def function(variant_name: str, extra: tuple, config: Config, dtype: str, arch: str):
        import pycuda.autoprimaryctx  # noqa: F401  (retains the primary context torch uses)
        import pycuda.driver as drv

        cubin, symbol = _cubin(variant_name, extra, config, dtype, arch)
        return drv.module_from_file(str(cubin)).get_function(symbol)

    def launch(self, fn, grid, block, smem: int, args, stream: int) -> None:
        if any(kind == "tmap" for kind, _ in args):
            raise ValueError(
                "TMA configs pass tensor maps by value, which this PyCUDA launcher does not; "
                "launch them with launcher='cupy' (or pick a TMA=0 config)"
            )
        import numpy as np
        import pycuda.driver as drv

        if stream != 0:
            raise RuntimeError("the PyCUDA launcher runs on the default stream only")
        attr = drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES
        ensure_dynamic_smem(fn, smem, lambda n: fn.set_attribute(attr, n))
        values = [np.uintp(v) if kind == "ptr" else np.int32(v) for kind, v in args]
        fn(*values, grid=grid, block=block, shared=smem)


LAUNCHERS = {"cupy": CupyLauncher(), "pycuda": PycudaLauncher()}
