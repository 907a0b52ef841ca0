"""python -m kernels {list,compile,check}: the registered variants, a compile + SASS check.

Examples:
  python -m kernels list
  python -m kernels compile --arch sm_80 --arch sm_90a
  python -m kernels check              # on a GPU: every GEMM kernel once against float64
"""

from __future__ import annotations

import argparse
import sys

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


def cmd_check(args) -> int:
    import torch

    if not torch.cuda.is_available():
        print("error: kernels check needs a CUDA device (torch.cuda.is_available() is False)")
        return 2
    from kernels.check import check_family

    failures = 0
    print(f"device: {torch.cuda.get_device_name()}")
    for family in args.family:
        for r in check_family(family):
            status = "skipped: " + r.skipped if r.skipped else ("ok" if r.ok else "FAIL")
            failures += not r.ok
            print(
                f"{r.variant:<20} {'x'.join(map(str, r.shape)):<12} "
                f"rel_error {r.rel_error:.2e}  {status}"
            )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kernels",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the registered variants").set_defaults(func=cmd_list)
    c = sub.add_parser("compile", help="nvcc-compile every variant and count its MMA instructions")
    c.add_argument("--arch", action="append", help="sm_80, sm_90a (repeatable)")
    c.add_argument("--default-only", action="store_true", help="skip the tunable-space corners")
    c.set_defaults(func=cmd_compile)
    k = sub.add_parser("check", help="one launch of every GEMM kernel against float64 (GPU)")
    k.add_argument("--family", nargs="+", default=sorted(GEMM_FAMILIES), choices=GEMM_FAMILIES)
    k.set_defaults(func=cmd_check)
    args = p.parse_args(argv)
    if getattr(args, "arch", None) is None and args.command == "compile":
        args.arch = ["sm_80", "sm_90a"]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
