"""Compile kernel variants with nvcc (cached by source hash + defines + arch + nvcc version),
and inspect their SASS (cuobjdump) for the tensor-core instructions they must contain."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sysconfig
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kernels import artifacts
from kernels.registry import CUDA_DIR, KernelVariant
from kernels.space import Config

CACHE_DIR = Path(os.environ.get("BIMASK_KERNEL_CACHE", Path.home() / ".cache" / "bimask-kernels"))


class CompileError(RuntimeError):
    pass


@cache
def nvcc_path() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"
    return str(cuda) if cuda.exists() else None


@cache
def nvcc_version() -> str:
    if not nvcc_path():
        return "none"
    out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1] if out else "unknown"


def _tool(name: str) -> str | None:
    """A CUDA binary tool from PATH, CUDA_HOME, or the nvidia-cuda-* wheels in site-packages."""
    if found := shutil.which(name):
        return found
    for base in (
        Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin",
        Path(sysconfig.get_paths()["purelib"]) / "nvidia" / "cu13" / "bin",
    ):
        if (base / name).exists():
            return str(base / name)
    return None


def artifact_key(variant: KernelVariant, defines: dict, arch: str) -> dict:
    """What a cubin is a build of: the manifest records it, the run side asks for it."""
    return {
        "variant": variant.name,
        "source_hash": source_hash(variant),
        "defines": {k: str(v) for k, v in sorted(defines.items())},
        "arch": arch,
        "toolchain": nvcc_version(),
        "flags": "gencode-v2",
    }


def source_hash(variant: KernelVariant) -> str:
    h = hashlib.sha256()
    for path in sorted(CUDA_DIR.glob("*.cu*")):  # the source and the headers it may include
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Built:
    variant: str
    arch: str
    config: Config
    cubin: Path
    cached: bool

    @property
    def ptxas_log(self) -> str:
        """ptxas's report for this build (registers, spills, wgmma serialization warnings)."""
        log = self.cubin.with_suffix(".log")
        return log.read_text() if log.exists() else ""

    @property
    def spill_bytes(self) -> int | None:
        """Bytes of register spill stores + loads ptxas reported; None without a report."""
        return spill_bytes(self.ptxas_log)


SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def spill_bytes(ptxas_log: str) -> int | None:
    """Spill stores + loads over every function of a ptxas -v report (None: no report)."""
    found = SPILLS.findall(ptxas_log)
    return sum(int(a) + int(b) for a, b in found) if found else None


# ptxas's warning when it had to serialize wgmma instructions (a silent 2x-slower kernel)
WGMMA_SERIALIZED = re.compile(r"C75\d\d\).*wgmma[^\n]*serialized[^\n]*")


def _target(arch: str) -> list[str]:
    """nvcc target flags. The -gencode form, since arch-specific targets such as sm_90a (wgmma)
    must not get a plain sm_90 pass."""
    num = arch.removeprefix("sm_")
    return [f"-gencode=arch=compute_{num},code=sm_{num}"]


def compile_variant(
    variant: KernelVariant,
    config: Config,
    arch: str = "sm_80",
    dtype: str = "bfloat16",
    extra: dict | None = None,
) -> Built:
    """nvcc -cubin for one config (plus ``extra`` defines); the result is cached on disk.

    A cached cubin is used only when the cache's manifest vouches for it (``kernels.artifacts``);
    otherwise it is rebuilt, or refused where there is no nvcc.
    """
    if variant.max_cc and arch not in variant.archs:  # arch-specific code (wgmma)
        raise CompileError(
            f"{variant.name} builds for {', '.join(variant.archs)} only, not {arch} "
            f"(it needs compute capability {variant.min_cc[0]}.{variant.min_cc[1]})"
        )
    defines = {**variant.defines(config, dtype), **(extra or {})}
    key = artifact_key(variant, defines, arch)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    out = CACHE_DIR / f"{variant.name}-{arch}-{digest}.cubin"
    if out.exists():
        why = artifacts.problem(CACHE_DIR, out, key)
        if why is None:
            return Built(variant.name, arch, config, out, True)
        if not nvcc_path():
            raise CompileError(
                f"kernel cache {CACHE_DIR}: refusing {out.name}: {why}; rebuild the cache with "
                "'python -m kernels compile' on a host with nvcc (one you trust)"
            )
        warnings.warn(f"kernel cache: {why}; rebuilding it", stacklevel=2)
    if not nvcc_path():
        raise CompileError(
            f"nvcc not found and {CACHE_DIR} holds no build of {variant.name} {config.to_json()} "
            f"for {arch}: install the CUDA toolkit, set CUDA_HOME, or point BIMASK_KERNEL_CACHE "
            "at a cache built for this run"
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [
        nvcc_path(),
        *_target(arch),
        "-cubin",
        "-O3",
        "-std=c++17",
        "-Xptxas",
        "-v",
        "-o",
        str(tmp),
        *(f"-D{k}={v}" for k, v in sorted(defines.items())),
        str(variant.path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise CompileError(
            f"{variant.name} {config.to_json()} {arch}: {proc.stderr.strip()[-800:]}"
        )
    out.with_suffix(".log").write_text(proc.stderr)
    tmp.replace(out)
    artifacts.record(CACHE_DIR, out, key)
    return Built(variant.name, arch, config, out, False)


def sass_instructions(cubin: Path) -> dict[str, int]:
    """Opcode counts of the cubin's SASS (needs cuobjdump + nvdisasm)."""
    cuobjdump, nvdisasm = _tool("cuobjdump"), _tool("nvdisasm")
    if not cuobjdump or not nvdisasm:
        raise CompileError(
            "cuobjdump/nvdisasm not found: pip install nvidia-cuda-cuobjdump "
            "nvidia-cuda-nvdisasm (the dev extra)"
        )
    env = dict(os.environ, PATH=f"{Path(nvdisasm).parent}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise CompileError(f"cuobjdump failed on {cubin}: {proc.stderr.strip()[-400:]}")
    counts: dict[str, int] = {}
    for op in re.findall(
        r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]+)", proc.stdout
    ):
        counts[op] = counts.get(op, 0) + 1
    return counts


def count_matching(counts: dict[str, int], prefix: str) -> int:
    return sum(n for op, n in counts.items() if op.startswith(prefix))
