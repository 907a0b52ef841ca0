"""python -m kernels {list,compile,build,check}: the variants, compile + SASS checks, builds.

Examples:
  python -m kernels list
  python -m kernels compile --arch sm_80 --arch sm_90a
  python -m kernels build --for-device H100 --out /tmp/kc   # ahead of time, for another host
  python -m kernels check              # on a GPU: every GEMM kernel once against float64
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kernels.build import (
    WGMMA_SERIALIZED,
    CompileError,
    compile_variant,
    count_matching,
    sass_instructions,
)
from kernels.registry import GEMM_FAMILIES, VARIANTS


def cmd_list(args) -> int:
    for v in VARIANTS.values():
        space = v.space()
        print(f"{v.name}: {v.description}")
        cc = ".".join(map(str, v.min_cc))
        cc = f"{cc} only (built for {', '.join(v.archs)})" if v.max_cc else f"{cc}+"
        print(
            f"  source {v.source} :: {v.symbol}; sparse tensor cores: {v.sparse}; "
            f"compute capability {cc}"
        )
        print(f"  patterns: {v.patterns}; dtypes: {', '.join(v.dtypes)}")
        print(
            f"  tunables ({len(space)} configs after restrictions, "
            f"{space.size_unrestricted} before):"
        )
        for name, values in v.tunables.items():
            print(f"    {name}: {list(values)}")
        print(f"  default: {v.default().to_json()}; available here: {v.is_available() or 'yes'}")
    return 0


def cmd_compile(args) -> int:
    failures = 0
    for v in VARIANTS.values():
        configs = v.corners() if not args.default_only else [v.default()]
        for arch in args.arch:
            if arch not in v.archs:
                print(f"{v.name:<20} {arch:<7} skipped: builds for {', '.join(v.archs)} only")
                continue
            counts = []
            for config in configs:
                try:
                    built = compile_variant(v, config, arch)
                    sass = sass_instructions(built.cubin)
                except CompileError as err:
                    print(f"FAIL {v.name} {arch} {config.to_json()}: {err}")
                    failures += 1
                    continue
                want = count_matching(sass, v.sass_instruction) if v.sass_instruction else None
                counts.append(want)
                if v.sparse and not want:
                    print(
                        f"FAIL {v.name} {arch} {config.to_json()}: no {v.sass_instruction} in SASS"
                    )
                    failures += 1
                if serialized := WGMMA_SERIALIZED.search(built.ptxas_log):
                    print(f"FAIL {v.name} {arch} {config.to_json()}: {serialized.group(0)}")
                    failures += 1
                if spilled := built.spill_bytes:  # local-memory traffic in the main loop
                    print(
                        f"FAIL {v.name} {arch} {config.to_json()}: ptxas spills {spilled} bytes "
                        "of registers (spill stores + loads); the space's register rule must "
                        "exclude this config"
                    )
                    failures += 1
                elif spilled is None:
                    print(f"WARN {v.name} {arch} {config.to_json()}: no ptxas report to check")
            label = v.sass_instruction or "no tensor-core instruction expected"
            print(f"{v.name:<20} {arch:<7} {len(configs)} configs  {label}: {counts}")
    if failures:
        print(f"{failures} failure(s)")
        return 1
    return 0


def cmd_build(args) -> int:
    import os
    import time

    from kernels import aot
    from kernels.build import nvcc_path, use_cache_dir

    try:
        ccs = [aot.device_cc(n) for n in args.for_device or []]
        ccs += [aot.cc_of_arch(a) for a in args.arch or []]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not ccs:
        print("error: name the target with --for-device NAME or --arch ARCH", file=sys.stderr)
        return 2
    if not nvcc_path():
        print(
            "error: kernels build needs nvcc (install the CUDA toolkit or set CUDA_HOME)",
            file=sys.stderr,
        )
        return 2
    for cc in ccs:
        if not aot.run_builds(cc, tuple(args.dtype)):
            print(
                f"error: no kernel of this project runs on compute capability {cc[0]}.{cc[1]} "
                "(they need sm_80 or newer)",
                file=sys.stderr,
            )
            return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file; give a folder for the kernel cache", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create --out {out}: {err.strerror}", file=sys.stderr)
        return 2
    use_cache_dir(out)
    builds = list(dict.fromkeys(b for cc in ccs for b in aot.run_builds(cc, tuple(args.dtype))))
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    t0 = time.perf_counter()
    compiled, cached, failed = aot.build_all(builds, jobs)
    for b, err in failed.items():
        print(f"FAIL {b.label()}: {err}")
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(
        f"{len(builds)} kernels for {', '.join(sorted({b.arch for b in builds}))}: "
        f"{compiled} built, {cached} cached, {len(failed)} failed; {size / 2**20:.1f} MiB in "
        f"{out} ({time.perf_counter() - t0:.0f} s, {jobs} jobs)"
    )
    print(f"use it with: BIMASK_KERNEL_CACHE={out.resolve()} (or --kernel-cache)")
    return 1 if failed else 0


def cmd_check(args) -> int:
    import torch

    if not torch.cuda.is_available():
        print(
            "error: kernels check needs a CUDA device (torch.cuda.is_available() is False); "
            "run it on a GPU host",
            file=sys.stderr,
        )
        return 2
    from kernels.build import stats_line
    from kernels.check import CHECKS

    failures = 0
    print(f"device: {torch.cuda.get_device_name()}")
    for family in args.family:
        for r in CHECKS[family]():
            status = "skipped: " + r.skipped if r.skipped else ("ok" if r.ok else "FAIL")
            failures += not r.ok
            print(
                f"{r.variant:<28} {'x'.join(map(str, r.shape)):<12} "
                f"rel_error {r.rel_error:.2e}  {status}"
            )
    print(stats_line())
    return 1 if failures else 0


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


ARCHS = sorted({arch for v in VARIANTS.values() for arch in v.archs})  # the nvcc targets we build


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kernels",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the registered variants").set_defaults(func=cmd_list)
    c = sub.add_parser("compile", help="nvcc-compile every variant and count its MMA instructions")
    c.add_argument("--arch", action="append", choices=ARCHS, help="repeatable (default: all)")
    c.add_argument("--default-only", action="store_true", help="skip the tunable-space corners")
    c.set_defaults(func=cmd_compile)
    b = sub.add_parser(
        "build",
        help="build every kernel a run launches into a cache another host can use",
        epilog="example: python -m kernels build --for-device H100 --out /tmp/kc",
    )
    b.add_argument("--for-device", action="append", help="GPU name, e.g. H100, A100, L4")
    b.add_argument("--arch", action="append", help="nvcc target, e.g. sm_90a (repeatable)")
    b.add_argument("--dtype", action="append", choices=["bfloat16", "float16"])
    b.add_argument("--jobs", type=_jobs, help="parallel nvcc processes (default: the cores)")
    b.add_argument("--out", required=True, help="the cache folder to fill")
    b.set_defaults(func=cmd_build)
    k = sub.add_parser("check", help="one launch of every GEMM kernel against float64 (GPU)")
    families = [*GEMM_FAMILIES, "cutlass_sm90"]  # kernels.check.CHECKS' names
    k.add_argument("--family", nargs="+", default=families, choices=families)
    k.add_argument("--kernel-cache", help="a kernel cache built ahead of time (kernels build)")
    k.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "dtype", "x") is None:
        args.dtype = ["bfloat16"]
    if getattr(args, "kernel_cache", None):
        from kernels.build import use_cache_dir

        try:
            use_cache_dir(args.kernel_cache, existing=True)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if getattr(args, "arch", None) is None and args.command == "compile":
        args.arch = ARCHS
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
