"""The ctypes loader of a CUTLASS sm90 sparse build (``kernels/cuda/cutlass_sm90_sparse.cu``):
argument marshalling and status codes turned into Python errors. Pointers and sizes only; the
torch-level operations are in ``kernels.cutlass_ops``.

The library links the CUDA runtime statically and calls CUDA only after its argument checks, so
loading it and calling ``check`` / ``can_implement`` / ``compressed_sizes`` needs no driver.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kernels.build import compile_variant
from kernels.registry import VARIANTS
from kernels.space import Config

VARIANT = "cutlass_sm90_sparse"
PREFIX = "cutlass_sm90_sparse_"
# status -> what was wrong; what to do (the C side's enum, same numbers)
STATUS = {
    1: "a null pointer was passed; allocate every operand",
    2: "a size is <= 0 or beyond 32 bits; split the GEMM",
    3: "K is not a multiple of 16 (the compressed A's rows must be whole 16-byte chunks); pad K",
    4: "an operand is not 16-byte aligned (TMA); pass a fresh .contiguous() tensor",
    5: "a leading dimension is smaller than its row or not a multiple of 16 bytes",
    6: "raster must be 0-2, swizzle 1/2/4/8, splits 1-16 (and 1 unless the build is stream-K)",
    7: "CUTLASS's can_implement refused the problem for this build; pick another config",
    8: "the workspace is smaller than workspace_size() asks for",
    9: "CUTLASS initialize failed (workspace, TMA descriptors or the shared-memory attribute)",
    10: "the kernel launch failed (cluster shape, resources, or an earlier CUDA error)",
    11: "no CUDA device or driver",
    12: "N is not a multiple of 8 (16-byte output rows; 4 for a float32 output); pad N",
}
FACTS = (
    "TILE_M",
    "TILE_N",
    "TILE_K",
    "CLUSTER_M",
    "CLUSTER_N",
    "SCHEDULE",
    "EPILOGUE",
    "STREAM_K",
    "DTYPE_BF16",
    "OUT_F32",
    "CUTLASS_VERSION",
    "STAGES",
)


class CutlassError(RuntimeError):
    """A CUTLASS entry returned a non-zero status."""

    def __init__(self, entry: str, status: int):
        why = STATUS.get(status, "unknown status")
        super().__init__(f"{PREFIX}{entry}: status {status}: {why}")
        self.entry, self.status = entry, status


_P, _I64, _I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_I64P, _IP = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int)
_SIGNATURES = {
    "config": [_IP, _I],
    "compressed_sizes": [_I64, _I64, _I64P, _I64P],
    "compress_check": [_P, _I64, _I64, _I64, _P, _P],
    "compress": [_P, _I64, _I64, _I64, _P, _P, _P],
    "check": [_P, _P, _P, _P, _I64, _I64, _I64, _I64, _I64, _I, _I, _I],
    "can_implement": [_I64, _I64, _I64, _I64, _I64, _I, _I, _I],
    "workspace_size": [_I64, _I64, _I64, _I64, _I64, _I, _I, _I, _I64P],
    "gemm": [_P, _P, _P, _P, _I64, _I64, _I64, _I64, _I64, _I, _I, _I, _P, _I64, _P],
}


@dataclass(frozen=True)
class RunOptions:
    """The run-time tunables of a config (no rebuild): raster order, swizzle, stream-K splits."""

    raster: int = 0
    swizzle: int = 1
    splits: int = 1

    @classmethod
    def of(cls, config: Config) -> RunOptions:
        c = config.to_dict()
        return cls(c.get("RASTER", 0), c.get("SWIZZLE", 1), c.get("SPLITS", 1))

    def args(self) -> tuple[int, int, int]:
        return self.raster, self.swizzle, self.splits


class CutlassLib:
    """One loaded build: each method calls its entry and raises CutlassError on a status."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lib = ctypes.CDLL(str(self.path))
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(self._lib, PREFIX + name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int

    def _call(self, entry: str, *args) -> None:
        status = getattr(self._lib, PREFIX + entry)(*args)
        if status:
            raise CutlassError(entry, status)

    def facts(self) -> dict[str, int]:
        """What the library was built with (tile, cluster, schedule, ..., pipeline stages)."""
        out = (ctypes.c_int * len(FACTS))()
        n = self._lib.cutlass_sm90_sparse_config(out, len(FACTS))
        return dict(zip(FACTS[:n], list(out)[:n], strict=True))

    def compressed_sizes(self, m: int, k: int) -> tuple[int, int]:
        """(value elements, metadata bytes) of an M x K matrix compressed for this build."""
        values, meta = ctypes.c_int64(), ctypes.c_int64()
        self._call("compressed_sizes", m, k, ctypes.byref(values), ctypes.byref(meta))
        return values.value, meta.value

    def compress_check(self, a: int, m: int, k: int, lda: int, values: int, meta: int) -> None:
        self._call("compress_check", a, m, k, lda, values, meta)

    def compress(self, a, m, k, lda, values, meta, stream: int) -> None:
        self._call("compress", a, m, k, lda, values, meta, stream)

    def check(self, a_values, a_meta, b, d, m, n, k, ldb, ldd, run: RunOptions) -> None:
        self._call("check", a_values, a_meta, b, d, m, n, k, ldb, ldd, *run.args())

    def can_implement(self, m, n, k, ldb, ldd, run: RunOptions) -> None:
        self._call("can_implement", m, n, k, ldb, ldd, *run.args())

    def workspace_size(self, m, n, k, ldb, ldd, run: RunOptions) -> int:
        out = ctypes.c_int64()
        self._call("workspace_size", m, n, k, ldb, ldd, *run.args(), ctypes.byref(out))
        return out.value

    def gemm(self, a_values, a_meta, b, d, m, n, k, ldb, ldd, run, workspace, ws_bytes, stream):
        self._call(
            "gemm",
            a_values,
            a_meta,
            b,
            d,
            m,
            n,
            k,
            ldb,
            ldd,
            *run.args(),
            workspace,
            ws_bytes,
            stream,
        )


@cache
def load(path: str | Path) -> CutlassLib:
    """The loaded library at ``path`` (once per process)."""
    return CutlassLib(Path(path))


def check_config(config: Config) -> None:
    """A full config of the family's space, else a ValueError (before anything is compiled)."""
    variant = VARIANTS[VARIANT]
    if set(config.to_dict()) != set(variant.tunables):
        raise ValueError(
            f"{VARIANT}: config {config.to_json()} must set exactly {sorted(variant.tunables)}"
        )
    if not variant.space().allows(config.to_dict()):
        raise ValueError(
            f"{VARIANT}: config {config.to_json()} breaks a restriction (a tile / cluster / "
            "schedule combination CUTLASS refuses or builds only to spill; see "
            "kernels/cutlass_family.py); pick one of VARIANTS['cutlass_sm90_sparse'].space()"
        )


def library(config: Config, dtype: str = "bfloat16", out_f32: bool = False) -> CutlassLib:
    """The build of ``config`` (compiled, or taken from the kernel cache), loaded."""
    check_config(config)
    variant = VARIANTS[VARIANT]
    built = compile_variant(variant, config, "sm_90a", dtype, {"OUT_F32": int(out_f32)})
    return load(built.cubin)
