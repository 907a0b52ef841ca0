"""This project's kernels (kernels/) as suite backends: the N:M sparse GEMM and its dense twin,
for each kernel family (sm80: mma.sync/mma.sp on any sm_80+ GPU; sm90: wgmma, Hopper only).

The sparse backend compresses A once per problem (setup, untimed; the compress kernel has its
own rows) and times the GEMM. For the Bi-Mask bwd-data pass the permutation is realised as a
tunable: ``in_kernel`` (the kernel reads B's K axis through pi), ``separate_op`` (dY's columns
gathered by index_select inside the timed call, then the plain kernel) or ``physical`` (B
already in pi order, as when W's rows and the next layer's columns are reordered every
perm_every steps: no per-step cost in this GEMM; the reorder, amortised, is not timed here, and
it changes the next layer's masks, a different method: ``perm_realisation="physical"``). Where
the family has the K-major gather (sm80), ``in_kernel_kn``: the kernel reads B as K x N (dY^T,
what a GEMM writing its output transposed hands on; made once per problem, untimed) and gathers
whole rows of it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch

from kernels import compress
from kernels.aot import QUICK_RULES, QUICK_TUNABLES
from kernels.build import nvcc_version, source_hash
from kernels.device import current_smem_limit
from kernels.ops import nm_gemm
from kernels.registry import GEMM_FAMILIES, VARIANTS
from suite.backends.base import (
    Backend,
    BackendFailure,
    Prepared,
    kernel_config,
    problem_operand,
)
from suite.problem import pattern_fits_hardware
from suite.space import SearchSpace


def _available(name: str) -> str | None:
    return VARIANTS[name].is_available()


def _space(name: str, problem, tunables: dict | None = None, rules: tuple = ()) -> SearchSpace:
    """The variant's space (or ``tunables`` within it, with ``rules``), restricted to what this
    host's GPU, if it has one, can launch."""
    limit = current_smem_limit()
    base = VARIANTS[name].space(smem_limit=limit)
    tunables = dict(tunables or base.tunables)
    rules = tuple(rules)
    if not name.startswith("dense_gemm") and problem.pass_ == "bwd-data" and problem.perm != "-":
        kn = next(
            (
                r["gather_kn"]
                for r in GEMM_FAMILIES.values()
                if name in r.values() and "gather_kn" in r
            ),
            None,
        )
        tunables["perm_realisation"] = ("in_kernel", "separate_op", "physical") + (
            ("in_kernel_kn",) if kn else ()
        )
        if kn:  # the K-major gather's own restrictions (its B tile has another size)
            kn_space = VARIANTS[kn].space(smem_limit=limit)
            rules += (
                lambda c, sp=kn_space: (
                    c["perm_realisation"] != "in_kernel_kn"
                    or sp.allows({k: v for k, v in c.items() if k != "perm_realisation"})
                ),
            )
    return SearchSpace(tunables, (*base.restrictions, *rules))


# The compressed A of the problem being tuned: the same for all of its configs (and for both
# families), so it is built once, not once per config (on the host: seconds at 8192^2).
_LAST_COMPRESSED: dict = {}


def _compressed(inputs, a: torch.Tensor, pattern: str):
    def build():
        try:
            comp = compress(a.cpu(), pattern)
        except ValueError as err:
            raise BackendFailure("unsupported", str(err)) from None
        return replace(comp, values=comp.values.to(a.device), meta=comp.meta.to(a.device))

    key = (id(inputs.a), id(inputs.perm), pattern)
    return problem_operand(_LAST_COMPRESSED, key, inputs.a, build)


def _sparse(problem, inputs, config, family: str) -> Prepared:
    realisation = config.to_dict().get("perm_realisation", "none")
    a, b, perm, gather, layout = inputs.a, inputs.b, None, None, "nk"
    if inputs.perm is not None:
        a = a.index_select(1, inputs.perm)  # k in pi order: consecutive N:M groups
        if realisation == "physical":
            b = b.index_select(1, inputs.perm).contiguous()
        elif realisation == "separate_op":
            gather = inputs.perm
        elif realisation == "in_kernel_kn":
            b, perm, layout = _transposed(inputs), inputs.perm.int(), "kn"
        else:
            perm = inputs.perm.int()
    comp = _compressed(inputs, a, problem.pattern)

    def operand():
        return b if gather is None else b.index_select(1, gather)

    return _prepared(
        problem, comp, operand, config, perm=perm, sparse=True, family=family, b_layout=layout
    )


_LAST_TRANSPOSED: dict = {}


def _transposed(inputs) -> torch.Tensor:
    """B^T (K x N, contiguous) of the problem being tuned, made once for all its configs."""
    key = (id(inputs.b),)
    return problem_operand(_LAST_TRANSPOSED, key, inputs.b, lambda: inputs.b.t().contiguous())


def _dense(problem, inputs, config, family: str) -> Prepared:
    return _prepared(
        problem, inputs.a, lambda: inputs.b, config, perm=None, sparse=False, family=family
    )


def _prepared(
    problem, a, get_b, config, *, perm, sparse: bool, family: str, b_layout: str = "nk"
) -> Prepared:
    """The timed call: our kernel into a preallocated output (float32 for split-K)."""
    kcfg = kernel_config(config)
    device = get_b().device
    dtype = torch.float32 if kcfg["SPLIT_K"] > 1 else get_b().dtype
    out = torch.empty(problem.m, problem.n, device=device, dtype=dtype)

    def run():
        return nm_gemm(a, get_b(), kcfg, perm=perm, out=out, family=family, b_layout=b_layout)

    return Prepared(run, lambda o: o.copy_(run()), sparse_path=sparse)


def _sparse_supports(problem) -> str | None:
    if problem.pattern == "dense":
        return "dense GEMM (bwd-weight): no sparse operand"
    if not pattern_fits_hardware(problem.pattern):
        return f"{problem.pattern}: no sparse tensor-core path (use bimask_dense)"
    return None


def _source(family: str) -> str:
    return source_hash(VARIANTS[GEMM_FAMILIES[family]["sparse"]])


def _version(family: str) -> str:
    return f"{_source(family)} {nvcc_version()}"


def _family_backends(family: str, suffix: str, sparse_about: str, dense_about: str):
    roles = GEMM_FAMILIES[family]
    return [
        Backend(
            f"bimask_sparse{suffix}",
            "cuda",
            "sparse",
            partial(_sparse, family=family),
            partial(_space, roles["sparse"]),
            quick_space=partial(
                _space, roles["sparse"], tunables=QUICK_TUNABLES[family], rules=QUICK_RULES[family]
            ),
            supports=_sparse_supports,
            available=partial(_available, roles["sparse"]),
            version=partial(_version, family),
            source=partial(_source, family),
            dtypes=("bfloat16", "float16"),
            description=sparse_about,
        ),
        Backend(
            f"bimask_dense{suffix}",
            "cuda",
            "dense",
            partial(_dense, family=family),
            partial(_space, roles["dense"]),
            quick_space=partial(
                _space, roles["dense"], tunables=QUICK_TUNABLES[family], rules=QUICK_RULES[family]
            ),
            available=partial(_available, roles["dense"]),
            version=partial(_version, family),
            source=partial(_source, family),
            dense_operand=True,
            dtypes=("bfloat16", "float16"),
            description=dense_about,
        ),
    ]


OUR_BACKENDS = [
    *_family_backends(
        "sm80",
        "",
        "this project's mma.sp m16n8k32 kernel (kernels/cuda/nm_gemm_sm80.cu)",
        "the same kernel with dense A (mma.sync m16n8k16)",
    ),
    *_family_backends(
        "sm90",
        "_sm90",
        "this project's Hopper kernel, wgmma.mma_async.sp m64nNk32 (kernels/cuda/nm_gemm_sm90.cu)",
        "the same Hopper kernel with dense A (wgmma m64nNk16)",
    ),
]
