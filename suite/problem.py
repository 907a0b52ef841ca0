"""GEMM problems for both sparse passes of Bi-Mask training, their inputs and the reference.

One kernel shape covers every pass: C (m x n) = A (m x k) . B (n x k)^T, A N:M along k.
  fwd:        A = W*Mf (out x in),     B = X  (tokens x in)   -> m=out, n=tokens, k=in
  bwd-data:   A = (W*Mb)^T (in x out), B = dY (tokens x out)  -> m=in,  n=tokens, k=out
  bwd-weight: dW = dY^T X, dense       A = dY^T, B = X^T      -> m=out, n=in,     k=tokens
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from bimask import NMPattern, bimask_backward_mask, find_permutation, nm_mask

PASSES = ("fwd", "bwd-data", "bwd-weight")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# relative-error tolerance of a GEMM output against the float64 reference, per input dtype
TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2, "float16": 1e-2}


@dataclass(frozen=True)
class Layer:
    """A weight (out x in) applied to ``tokens`` rows; ``source`` names the model it comes from."""

    name: str
    out: int
    inp: int
    tokens: int
    source: str = ""


@dataclass(frozen=True)
class GemmProblem:
    op: str
    pass_: str
    m: int
    n: int
    k: int
    dtype: str
    pattern: str  # "dense" for the dense weight-gradient GEMM
    perm: str = "-"  # permutation strategy of the bwd-data mask ("-" elsewhere)
    seed: int = 0
    layer: str = ""

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k  # dense-equivalent: the work a dense GEMM would do

    def key(self) -> dict:
        d = asdict(self)
        d["pass"] = d.pop("pass_")
        return d


def problems_for_layer(layer: Layer, pattern: str, dtype: str, perms: tuple[str, ...]):
    """The three training GEMMs of a layer (bwd-data once per permutation strategy)."""
    out = [
        GemmProblem(
            "nm_gemm", "fwd", layer.out, layer.tokens, layer.inp, dtype, pattern, layer=layer.name
        )
    ]
    out += [
        GemmProblem(
            "nm_gemm",
            "bwd-data",
            layer.inp,
            layer.tokens,
            layer.out,
            dtype,
            pattern,
            perm=p,
            layer=layer.name,
        )
        for p in perms
    ]
    out.append(
        GemmProblem(
            "gemm",
            "bwd-weight",
            layer.out,
            layer.inp,
            layer.tokens,
            dtype,
            "dense",
            layer=layer.name,
        )
    )
    return out


@dataclass
class GemmInputs:
    a: torch.Tensor  # (m, k), already masked
    mask: torch.Tensor | None  # (m, k) bool, None for dense problems
    b: torch.Tensor  # (n, k)
    perm: torch.Tensor | None = None  # bwd-data: the row permutation pi of W (groups along k)
    a_dense: torch.Tensor | None = None  # sparse problems: A before the mask (the dense layer)

    def dense_view(self) -> GemmInputs:
        """The inputs of the dense layer the sparse one replaces: A unmasked, no mask."""
        if self.a_dense is None:
            return self
        return GemmInputs(self.a_dense, None, self.b, self.perm)


def make_inputs(p: GemmProblem, device: str | torch.device = "cpu") -> GemmInputs:
    """Fresh random inputs (never zeros) for a problem, on ``device``, seeded by ``p.seed``."""
    g = torch.Generator().manual_seed(p.seed * 7919 + p.m * 31 + p.n * 17 + p.k)
    dtype = DTYPES[p.dtype]
    b = torch.randn(p.n, p.k, generator=g)
    if p.pattern == "dense":
        a, mask, perm, a_dense = torch.randn(p.m, p.k, generator=g), None, None, None
    elif p.pass_ == "fwd":
        a_dense = torch.randn(p.m, p.k, generator=g)
        mask, perm = nm_mask(a_dense, p.pattern), None
        a = a_dense * mask
    else:  # bwd-data: W is (out=k) x (in=m); A = (W*Mb)^T is N:M along k over pi-groups
        w = torch.randn(p.k, p.m, generator=g)
        mf = nm_mask(w, p.pattern)
        perm = find_permutation(w, mf, p.pattern, p.perm if p.perm != "-" else "identity")
        mb = bimask_backward_mask(w, mf, p.pattern, perm)
        a, mask, a_dense = (w * mb).t().contiguous(), mb.t().contiguous(), w.t().contiguous()
    to = dict(device=device, dtype=dtype)
    return GemmInputs(
        a.to(**to),
        None if mask is None else mask.to(device),
        b.to(**to),
        None if perm is None else perm.to(device),
        None if a_dense is None else a_dense.to(**to),
    )


def reference(inputs: GemmInputs) -> torch.Tensor:
    """C = A . B^T in float64 on the CPU: the oracle every backend is checked against."""
    return inputs.a.double().cpu() @ inputs.b.double().cpu().t()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out - ref| / max |ref| over every element (NaN anywhere -> inf)."""
    out = out.double().cpu()
    if out.shape != ref.shape or not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def pattern_fits_hardware(pattern: str) -> bool:
    """Sparse tensor cores (16-bit) take a mask with at most 2 kept in every aligned 4."""
    return pattern != "dense" and NMPattern.parse(pattern).max_kept_per_aligned_window(4) <= 2
