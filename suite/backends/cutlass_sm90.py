"""``cutlass_sm90``: CUTLASS 3.x's sm90 structured-sparse GEMM (TMA + wgmma.sp, warp-specialised)
built by this project from the nvidia-cutlass wheel's headers (``kernels/cuda/
cutlass_sm90_sparse.cu``), tile x cluster x schedule x raster tuned. Not the ``cutlass`` backend:
that one is torch's semi-structured path, whose CUTLASS kernels are sm80 ones, untuned.

A is compressed once per problem and metadata layout (setup, untimed; CUTLASS's own device
compressor, priced per step by the ``cutlass_sm90`` compressor) and the GEMM is timed. The bwd-data
permutation is realised like the other library backends (``suite.backends.gpu``): ``gather`` (dY's
columns gathered by pi inside the timed call) or ``physical`` (dY already in pi order).
"""

from __future__ import annotations

import torch

from kernels import cutlass_family as fam
from kernels import cutlass_headers
from kernels.build import nvcc_version, source_hash
from kernels.registry import VARIANTS
from suite.backends.base import (
    Backend,
    BackendFailure,
    Prepared,
    kernel_config,
    problem_operand,
)
from suite.backends.gpu import _ordered_operands, _realisations, _sparse_supports
from suite.space import Config, SearchSpace

VARIANT = "cutlass_sm90_sparse"
_LAST: dict = {}  # the compressed A of the problem being tuned, per metadata layout


def _space(problem, tunables: dict | None = None, rules: tuple = ()) -> SearchSpace:
    base = VARIANTS[VARIANT].space()
    tunables = {**(tunables or base.tunables), "perm_realisation": _realisations(problem)}
    return SearchSpace(tunables, (*base.restrictions, *rules))


def _quick_space(problem) -> SearchSpace:
    return _space(problem, fam.QUICK_TUNABLES, fam.QUICK_RULES)


def _compressed(inputs, a: torch.Tensor, config: Config):
    from kernels.cutlass_ops import cutlass_compress, meta_block

    def build():
        try:
            return cutlass_compress(a.contiguous(), config)
        except ValueError as err:
            raise BackendFailure("unsupported", str(err)) from None

    key = (id(inputs.a), id(inputs.perm), meta_block(config), a.dtype)
    # one problem at a time, in both metadata layouts (TILE_K 64 and 128)
    return problem_operand(_LAST, key, inputs.a, build, keep=2)


def _prepare(problem, inputs, config) -> Prepared:
    from kernels.build import CompileError
    from kernels.cutlass_lib import CutlassError
    from kernels.cutlass_ops import cutlass_gemm

    kcfg = kernel_config(config)
    a, get_b = _ordered_operands(inputs, config["perm_realisation"])
    try:
        comp = _compressed(inputs, a, kcfg)
        out = torch.empty(problem.m, problem.n, dtype=inputs.b.dtype, device=inputs.b.device)
        cutlass_gemm(comp, get_b(), kcfg, out=out)  # builds / loads and checks once, untimed
    except CompileError as err:
        raise BackendFailure("compile", str(err)) from None
    except CutlassError as err:
        status = "launch" if err.entry == "gemm" and err.status >= 9 else "unsupported"
        raise BackendFailure(status, str(err)) from None

    def run():
        return cutlass_gemm(comp, get_b(), kcfg, out=out)

    return Prepared(run, lambda o: o.copy_(run()), sparse_path=True)


def _version() -> str:
    return f"{source_hash(VARIANTS[VARIANT])} {nvcc_version()} {cutlass_headers.version()}"


CUTLASS_SM90_BACKENDS = [
    Backend(
        "cutlass_sm90",
        "cuda",
        "sparse",
        _prepare,
        _space,
        quick_space=_quick_space,
        supports=_sparse_supports,
        available=lambda: VARIANTS[VARIANT].is_available(),
        version=_version,
        dtypes=("bfloat16", "float16"),
        description=(
            "CUTLASS 3.x sm90 sparse GEMM built from the nvidia-cutlass headers (TMA + wgmma.sp), "
            "tile x cluster x schedule x raster tuned"
        ),
    )
]
