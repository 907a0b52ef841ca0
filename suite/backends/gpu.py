"""GPU baselines behind the same call: cuBLAS (torch.matmul), cuSPARSELt, CUTLASS (2:4 via torch).

``cutlass`` is torch's semi-structured path (its prebuilt CUTLASS sm80 kernels, nothing tuned);
the CUTLASS 3.x sm90 family this project builds and tunes is ``cutlass_sm90`` (its own module).

The bwd-data mask groups W's rows by the permutation pi, so along k of that GEMM the N:M groups
are pi-ordered. The sparse backends take a ``perm_realisation`` tunable for it:
  gather:   gather B's (dY's) columns by pi inside the timed call, A compressed in pi order;
  physical: W's rows (and the next layer's columns) were reordered every perm_every steps,
            so dY already arrives in pi order: nothing per step in this GEMM. The reorder
            itself (amortised) is not timed here, and it changes the next layer's masks: a
            different method (``bimask`` with ``perm_realisation="physical"``).
"""

from __future__ import annotations

import torch

from suite.backends.base import Backend, BackendFailure, Prepared
from suite.problem import pattern_fits_hardware
from suite.space import SearchSpace


def _cuda_reason() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA device"


def _sm80_reason() -> str | None:
    if (why := _cuda_reason()) is not None:
        return why
    major, minor = torch.cuda.get_device_capability()
    return None if major >= 8 else f"needs compute capability 8.0+, device has {major}.{minor}"


def _sparse_supports(problem) -> str | None:
    if problem.pattern == "dense":
        return "dense GEMM (bwd-weight): no sparse operand"
    if not pattern_fits_hardware(problem.pattern):
        return f"{problem.pattern} can keep more than 2 in an aligned 4: no 2:4 tensor-core path"
    if problem.dtype not in ("bfloat16", "float16"):
        return "sparse tensor cores take 16-bit inputs here"
    return None


def _realisations(problem) -> tuple[str, ...]:
    return (
        ("gather", "physical") if problem.pass_ == "bwd-data" and problem.perm != "-" else ("none",)
    )


def _ordered_operands(inputs, realisation: str):
    """A with its k axis in pi order (N:M groups consecutive), and a B getter for the timed call."""
    if realisation == "none" or inputs.perm is None:
        return inputs.a, lambda: inputs.b
    perm = inputs.perm
    a = inputs.a.index_select(1, perm).contiguous()
    if realisation == "gather":
        return a, lambda: inputs.b.index_select(1, perm)
    b = inputs.b.index_select(1, perm).contiguous()
    return a, lambda: b


def _cublas(problem, inputs, config) -> Prepared:
    a, bt = inputs.a, inputs.b.t()
    out = torch.empty(problem.m, problem.n, dtype=a.dtype, device=a.device)
    return Prepared(
        lambda: torch.matmul(a, bt, out=out),
        lambda o: torch.matmul(a, bt, out=o),
        sparse_path=False,
    )


def _max_alg_id() -> int:
    probe = getattr(getattr(torch.backends, "cusparselt", None), "get_max_alg_id", None)
    try:
        return int(probe()) if probe else 7
    except Exception:
        return 7


def _cslt_space(problem) -> SearchSpace:
    return SearchSpace(
        {
            "alg_id": tuple(range(_max_alg_id() + 1)),
            "split_k": (1, 2, 4, 8),
            "perm_realisation": _realisations(problem),
        }
    )


def _cslt_quick_space(problem) -> SearchSpace:
    """Every algorithm id without split-k: the slice of the space that usually holds the best."""
    return SearchSpace(
        {
            "alg_id": tuple(range(_max_alg_id() + 1)),
            "split_k": (1,),
            "perm_realisation": _realisations(problem),
        }
    )


def _cusparselt(problem, inputs, config) -> Prepared:
    a, get_b = _ordered_operands(inputs, config["perm_realisation"])
    try:
        packed = torch._cslt_compress(a)
    except (RuntimeError, AttributeError) as err:
        raise BackendFailure("unsupported", f"cuSPARSELt compress: {err}") from None

    def run():
        return torch._cslt_sparse_mm(
            packed, get_b().t(), alg_id=config["alg_id"], split_k=config["split_k"]
        )

    return Prepared(run, lambda o: o.copy_(run()), sparse_path=True)


def _cutlass_space(problem) -> SearchSpace:
    return SearchSpace({"perm_realisation": _realisations(problem)})


def _cutlass(problem, inputs, config) -> Prepared:
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    a, get_b = _ordered_operands(inputs, config["perm_realisation"])
    SparseSemiStructuredTensor._FORCE_CUTLASS = True
    try:
        a_sparse = to_sparse_semi_structured(a)
    except (RuntimeError, ValueError) as err:
        raise BackendFailure("unsupported", f"CUTLASS semi-structured: {err}") from None
    finally:
        SparseSemiStructuredTensor._FORCE_CUTLASS = False

    def run():
        return torch.mm(a_sparse, get_b().t())

    return Prepared(run, lambda o: o.copy_(run()), sparse_path=True)


def _cuda_version() -> str:
    return f"torch {torch.__version__} cuda {torch.version.cuda}"


GPU_BACKENDS = [
    Backend(
        "cublas",
        "cuda",
        "dense",
        _cublas,
        lambda p: SearchSpace(),
        available=_cuda_reason,
        version=_cuda_version,
        baseline=True,
        dtypes=("bfloat16", "float16", "float32"),
        description="dense torch.matmul (cuBLAS)",
        dense_operand=True,
    ),
    Backend(
        "cusparselt",
        "cuda",
        "sparse",
        _cusparselt,
        _cslt_space,
        quick_space=_cslt_quick_space,
        supports=_sparse_supports,
        available=_sm80_reason,
        version=_cuda_version,
        dtypes=("bfloat16", "float16"),
        description="torch._cslt_sparse_mm, alg_id x split_k swept",
    ),
    Backend(
        "cutlass",
        "cuda",
        "sparse",
        _cutlass,
        _cutlass_space,
        supports=_sparse_supports,
        available=_sm80_reason,
        version=_cuda_version,
        dtypes=("bfloat16", "float16"),
        description="torch semi-structured (prebuilt CUTLASS sm80 kernels, not cutlass_sm90)",
    ),
]
