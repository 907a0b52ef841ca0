"""Compile a variant through NVRTC (libnvrtc via ctypes): no GPU and no CuPy needed.

Used as a second compiler check next to nvcc, where ``nvidia-cuda-nvrtc`` (or a CUDA toolkit)
provides libnvrtc.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sysconfig
from functools import cache
from pathlib import Path

from kernels.registry import CUDA_DIR, KernelVariant
from kernels.space import Config


class NvrtcError(RuntimeError):
    pass


@cache
def _lib() -> ctypes.CDLL | None:
    candidates = sorted(
        glob.glob(
            str(Path(sysconfig.get_paths()["purelib"]) / "nvidia" / "cu*" / "lib" / "libnvrtc.so*")
        )
    )
    cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates += sorted(glob.glob(f"{cuda}/lib64/libnvrtc.so*"))
    for path in candidates:
        if "builtins" in path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def available() -> str | None:
    return None if _lib() else "libnvrtc not found (pip install nvidia-cuda-nvrtc)"


def _check(code: int, what: str, log: str = "") -> None:
    if code != 0:
        raise NvrtcError(f"NVRTC {what} failed (code {code}): {log[-800:]}")


def compile_cubin(
    variant: KernelVariant, config: Config, arch: str = "sm_80", dtype: str = "bfloat16"
) -> bytes:
    """The cubin NVRTC builds for one config of a variant."""
    lib = _lib()
    if lib is None:
        raise NvrtcError(available())
    source = variant.path.read_text()
    prog = ctypes.c_void_p()
    _check(
        lib.nvrtcCreateProgram(
            ctypes.byref(prog), source.encode(), variant.source.encode(), 0, None, None
        ),
        "create",
    )
    cuda_inc = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    opts = [
        f"--gpu-architecture={arch}",
        "-std=c++17",
        f"-I{CUDA_DIR}",
        f"-I{cuda_inc}",
        *(f"-D{k}={v}" for k, v in sorted(variant.defines(config, dtype).items())),
    ]
    arr = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
    try:
        code = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        _check(code, "compile", log.value.decode(errors="replace"))
        _check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "cubin size")
        cubin = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetCUBIN(prog, cubin), "get cubin")
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
