"""Compile kernel variants with nvcc (cached by source hash + defines + arch + CUDA release, and
the version of a library a variant is built against, verified through the cache's manifest,
``kernels.artifacts``), and inspect their SASS (cuobjdump) for the tensor-core instructions they
must contain. A variant's product is a cubin (launched through CuPy / PyCUDA) or a host shared
library with C entries (the CUTLASS family, loaded with ctypes: ``kernels.cutlass_lib``)."""

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
# How this process got its kernels: "cached" (verified from the cache), "compiled" (nvcc here).
STATS = {"cached": 0, "compiled": 0}


def use_cache_dir(path: str | Path, *, existing: bool = False) -> Path:
    """Point this process (and the processes it starts) at another kernel build cache.

    ``existing``: the folder must be there already (a cache built ahead of time, as
    ``--kernel-cache`` names one); ValueError otherwise."""
    global CACHE_DIR
    path = Path(path).expanduser()
    if existing and not path.is_dir():
        raise ValueError(
            f"--kernel-cache {path} is not a folder (build one with "
            "'python -m kernels build --for-device NAME --out DIR')"
        )
    CACHE_DIR = path.resolve()
    os.environ["BIMASK_KERNEL_CACHE"] = str(CACHE_DIR)
    return CACHE_DIR


def stats_line() -> str:
    return f"{STATS['cached']} kernels from the cache, {STATS['compiled']} compiled here"


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
def _nvcc_banner() -> str:
    """What ``nvcc --version`` prints ("" without nvcc); run once per process."""
    if not nvcc_path():
        return ""
    return subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True).stdout


@cache
def nvcc_version() -> str:
    if not nvcc_path():
        return "none"
    out = _nvcc_banner()
    return out.strip().splitlines()[-1] if out else "unknown"


@cache
def toolchain() -> str:
    """The toolchain part of a build's key: the CUDA release, e.g. "cuda-13.0".

    What makes a cubin usable is its target (the arch, also in the key) and the CUDA release it
    was built with (the driver it needs). Two nvcc builds of one release differ in their build
    string ("Build cuda_13.0.r13.0/compiler.36424714_0") but emit cubins for the same target
    and driver, so the build string is left out: a cache built on a login node is then used on
    a compute node whose toolkit came from another installer of the same release. Without nvcc
    the run side takes the CUDA release torch was built for: that is the driver's contract.
    """
    if nvcc_path():
        if found := re.search(r"release (\d+\.\d+)", _nvcc_banner()):
            return f"cuda-{found.group(1)}"
        return "cuda-unknown"
    try:
        import torch

        return f"cuda-{torch.version.cuda}" if torch.version.cuda else "cuda-none"
    except ImportError:
        return "cuda-none"


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
    """What a cubin (or shared library) is a build of: the manifest records it, the run side
    asks for it. A variant built against a library (CUTLASS) adds that library's version."""
    key = {
        "variant": variant.name,
        "source_hash": source_hash(variant),
        "defines": {k: str(v) for k, v in sorted(defines.items())},
        "arch": arch,
        "toolchain": toolchain(),
        "flags": "gencode-v2" if variant.product == "cubin" else "shared-v1",
    }
    if variant.dependency is not None:
        key["dependency"] = variant.dependency()  # None here: served by the cache's build
    return key


def source_hash(variant: KernelVariant) -> str:
    """The variant's own source and the project headers it may include (not the other .cu
    files: a new kernel source does not invalidate the builds of the others)."""
    h = hashlib.sha256()
    for path in [variant.path, *sorted(CUDA_DIR.glob("*.cuh"))]:
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


def _product_flags(variant: KernelVariant) -> list[str]:
    """nvcc flags of the variant's product: a cubin, or a host shared library (C entries that
    launch the kernel themselves: CUTLASS) with the include folders it needs."""
    if variant.product == "cubin":
        return ["-cubin"]
    try:
        includes = variant.include_dirs() if variant.include_dirs else []
    except RuntimeError as err:  # e.g. CUTLASS's headers are not installed
        raise CompileError(f"{variant.name}: {err}") from None
    return [
        "-shared",
        "-Xcompiler=-fPIC,-fvisibility=hidden",
        "--expt-relaxed-constexpr",
        "-DNDEBUG",
        *(f"-I{d}" for d in includes),
    ]


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
    out, key = cache_entry(variant, config, arch, dtype, extra)
    if out.exists():
        why = artifacts.problem(CACHE_DIR, out, key)
        if why is None:
            STATS["cached"] += 1
            return Built(variant.name, arch, config, out, True)
        if not nvcc_path():
            raise CompileError(
                f"kernel cache {CACHE_DIR}: refusing {out.name}: {why}; rebuild the cache with "
                "'python -m kernels build' on a host with nvcc (one you trust)"
            )
        warnings.warn(f"kernel cache: {why}; rebuilding it", stacklevel=2)
    if not nvcc_path():
        raise CompileError(
            f"nvcc not found and {cache_problem(out, key)}: install the CUDA toolkit, set "
            "CUDA_HOME, or point BIMASK_KERNEL_CACHE (--kernel-cache) at a cache built for this "
            "run ('python -m kernels build')"
        )
    defines = key["defines"]
    product = _product_flags(variant)  # before anything is written: missing headers raise
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    cmd = [
        nvcc_path(),
        *_target(arch),
        *product,
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
    STATS["compiled"] += 1
    return Built(variant.name, arch, config, out, False)


def cache_entry(
    variant: KernelVariant,
    config: Config,
    arch: str,
    dtype: str = "bfloat16",
    extra: dict | None = None,
) -> tuple[Path, dict]:
    """Where the cache keeps this build, and the key its manifest entry must carry."""
    defines = {**variant.defines(config, dtype), **(extra or {})}
    key = artifact_key(variant, defines, arch)
    if "dependency" in key and key["dependency"] is None:
        key = _cached_dependency(key)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    suffix = ".cubin" if variant.product == "cubin" else ".so"
    return CACHE_DIR / f"{variant.name}-{arch}-{digest}{suffix}", key


def _cached_dependency(key: dict) -> dict:
    """A key whose library is not installed here (a GPU host running from a carried cache): the
    key of the one build of it the manifest holds, whatever library version built it."""
    try:
        entries = artifacts.read_manifest(CACHE_DIR).values()
    except artifacts.ArtifactError:
        return key
    same = [
        e["key"]
        for e in entries
        if {k: v for k, v in e["key"].items() if k != "dependency"}
        == {k: v for k, v in key.items() if k != "dependency"}
    ]
    return same[0] if len({json.dumps(k, sort_keys=True) for k in same}) == 1 else key


def cache_problem(path: Path, key: dict) -> str | None:
    """Why the cache cannot serve this build (None when it can), naming any near miss."""
    if path.exists():
        return artifacts.problem(CACHE_DIR, path, key)
    what = f"{key['variant']} {json.dumps(key['defines'], sort_keys=True)} for {key['arch']}"
    try:
        entries = artifacts.read_manifest(CACHE_DIR).values()
    except artifacts.ArtifactError as err:
        return f"{CACHE_DIR} holds no usable build of {what} ({err})"
    same = ("variant", "defines", "arch")
    for entry in entries:
        other = entry["key"]
        if all(other.get(k) == key[k] for k in same):
            diff = [f"{k} {other.get(k)} != {key[k]}" for k in key if other.get(k) != key[k]]
            return f"{CACHE_DIR} holds {what} only for another build ({'; '.join(diff)})"
    return f"{CACHE_DIR} holds no build of {what}"


def sass_sequence(cubin: Path) -> list[str]:
    """The cubin's SASS opcodes in program order, instructions that can execute (needs
    cuobjdump + nvdisasm)."""
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
    return [
        op
        for pred, op in re.findall(
            r"/\*[0-9a-f]{4,}\*/\s+(?:@(!?U?P\w+)\s+)?([A-Z][A-Za-z0-9_.]+)", proc.stdout
        )
        if pred != "!PT"  # never executed (padding ptxas emits, e.g. after cp.async zfill)
    ]


def sass_instructions(cubin: Path) -> dict[str, int]:
    """Opcode counts of the cubin's SASS (see :func:`sass_sequence`)."""
    counts: dict[str, int] = {}
    for op in sass_sequence(cubin):
        counts[op] = counts.get(op, 0) + 1
    return counts


def count_matching(counts: dict[str, int], prefix: str) -> int:
    return sum(n for op, n in counts.items() if op.startswith(prefix))
