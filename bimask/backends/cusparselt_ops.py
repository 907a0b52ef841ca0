"""The ``cusparselt`` backend: SparseLinear's sparse GEMMs on cuSPARSELt through PyTorch (CUDA).

forward      Y  = X (W*Mf)^T : A = W*Mf (out x in, K = in), compressed; Y = A @ X^T written
                              transposed (``transpose_result=True``): tokens x out, no copy;
input grad   dX = dY (W*Mb)  : A = (W*Mb)^T (in x out) with its K axis (out) in pi order,
                              compressed; dY's columns gathered into pi order by a separate
                              ``index_select`` (section ``gather``: cuSPARSELt cannot gather
                              inside); no gather when ``layer.perm_is_identity`` or the method
                              has no permutation;
weight grad  dW = dY^T X     : dense, torch.

A pass whose mask is not N:M along that GEMM's K (srste's input gradient, the dense method, a
probe that swaps in Mf) runs dense through torch; ``describe()`` says which GEMM runs where.
Compressed operands are cached per layer and reused while the weight (its ``_version`` and
storage) and pi did not change: evaluation loops, gradient accumulation and repeated forwards
compress once. The masks are a function of the weight and pi (tmask's refresh rebuilds the same
mask from the same weight), so they need no key of their own. Nothing here reads a device
tensor on the host.

The PyTorch ops, as declared in aten (native_functions.yaml, sparse/cuda/cuSPARSELtOps.cpp):

``torch._cslt_compress(input) -> Tensor``
    ``input``: 2-D, row-major contiguous, CUDA, float16/bfloat16 (also int8, float32 as tf32,
    float8_e4m3fn); it must already be 2:4 (at most 2 nonzeros in every aligned 4 along a row):
    cuSPARSELt packs it without checking. Returns an opaque buffer (values + metadata).
``torch._cslt_sparse_mm(compressed_A, dense_B, bias=None, alpha=None, out_dtype=None,
transpose_result=False, alg_id=0, split_k=1, split_k_mode=-1) -> Tensor``
    A (m x k, m read from the buffer's size) @ B (k x n). B is row-major, or the transpose of a
    contiguous n x k matrix (read with op(B) = transpose, no copy: what is passed here). Result
    m x n, or n x m with ``transpose_result=True``. ``out_dtype`` is only for 8-bit inputs:
    16-bit inputs give a 16-bit result (float32 accumulation), so float32 training casts after.
    ``bias``: length m, the result's dtype (not used: the bias is added in the layer's dtype).
    ``alg_id`` in ``0..torch.backends.cusparselt.get_max_alg_id()``, ``split_k >= 1``; the
    last argument is ``split_k_mode`` (int) in recent releases and ``split_k_one_kernel``
    (bool) in older ones, so it is never passed.
Shapes (torch.sparse's cuSPARSELt limits for 16-bit): the sparse operand's rows and columns
multiples of 16, so a layer's in and out features; the dense operand's multiples of 8, so the
tokens of a batch are padded to a multiple of 8 here (a copy, only when they are not).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bimask.patterns import NMPattern
from bimask.profile import section

HALF = (torch.bfloat16, torch.float16)
SPARSE_ALIGN = 16  # rows and columns of the compressed operand (16-bit)
DENSE_ALIGN = 8  # rows and columns of the dense operand (16-bit)
DEFAULT_CONFIG = {"alg_id": 0, "split_k": 1}

_ALLOW_CPU = False  # tests only: let CPU tensors reach the (swapped-in) ops


def pattern_reason(pattern: NMPattern) -> str | None:
    """Why 2:4 sparse tensor cores cannot run ``pattern``; None when they can (<= 2 kept in
    every aligned 4: 2:4, 1:4, 2:8, 1:8, 1:16, ...)."""
    if pattern.max_kept_per_aligned_window(4) <= 2:
        return None
    return (
        f"pattern {pattern} can keep {pattern.max_kept_per_aligned_window(4)} of an aligned 4: "
        "cuSPARSELt runs 2:4 sparse tensor cores only; train this pattern with backend='torch'"
    )


def shape_reason(out_features: int, in_features: int) -> str | None:
    """Why cuSPARSELt cannot run a Linear of this shape; None when it can."""
    bad = [
        f"{name}={size}"
        for name, size in (("out_features", out_features), ("in_features", in_features))
        if size % SPARSE_ALIGN
    ]
    if not bad:
        return None
    return (
        f"cuSPARSELt needs in and out features that are multiples of {SPARSE_ALIGN}, the layer "
        f"has weight ({out_features}, {in_features}) ({', '.join(bad)}): pad the layer, keep it "
        "dense, or train it with backend='torch'"
    )


def device_reason(t: torch.Tensor) -> str | None:
    """Why this tensor's device cannot run cuSPARSELt; None when it can."""
    if t.device.type != "cuda":
        if _ALLOW_CPU:
            return None
        return "the cusparselt backend runs on CUDA tensors; use backend='torch' on the CPU"
    if not torch.backends.cusparselt.is_available():
        return "this PyTorch build has no cuSPARSELt; use backend='kernels' or backend='torch'"
    return None


@dataclass
class _LayerCache:
    """What one layer keeps between calls: compressed operands and tuned configs."""

    compressed: dict[str, tuple[tuple, tuple, torch.Tensor]] = field(default_factory=dict)
    tuned: object = None  # the TunedConfigs the configs below came from
    configs: dict[tuple, dict] = field(default_factory=dict)


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> _LayerCache


def layer_cache(layer) -> _LayerCache:
    """The cache of ``layer`` (made on first use; it goes with the layer)."""
    if layer not in _CACHES:
        _CACHES[layer] = _LayerCache()
    return _CACHES[layer]


def _version_key(t: torch.Tensor | None) -> tuple:
    return () if t is None else (t.data_ptr(), t._version)


def _same_objects(refs: tuple, objs: tuple) -> bool:
    """True when each weak reference still points at the matching object (a replaced weight
    or pi is a new object, even where it reuses the old one's memory)."""
    return all(
        (r is None and o is None) or (r is not None and r() is o)
        for r, o in zip(refs, objs, strict=True)
    )


def _refs(objs: tuple) -> tuple:
    return tuple(None if o is None else weakref.ref(o) for o in objs)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class CusparseltLinearOps:
    """``LayerOps`` for ``linear`` on cuSPARSELt.

    ``sparse_forward`` / ``sparse_backward`` say whether the layer's masks make that GEMM N:M
    along its K (callables: a probe may switch the backward mask at run time); ``perm`` returns
    the row permutation pi to realise by a gather, or None (identity groups: no gather).
    """

    layer: object
    pattern: NMPattern
    sparse_forward: Callable[[], bool]
    sparse_backward: Callable[[], bool]
    perm: Callable[[], torch.Tensor | None]
    compute_dtype: torch.dtype = torch.bfloat16

    def __post_init__(self) -> None:
        if self.compute_dtype not in HALF:
            raise ValueError(
                f"cuSPARSELt computes in bfloat16 or float16, not {self.compute_dtype}"
            )
        if not (self.sparse_forward() or self.sparse_backward()):
            return  # the dense method: every GEMM runs on torch
        if (why := pattern_reason(self.pattern)) is not None:
            raise ValueError(why)
        out, in_ = self._weight().shape[0], self._weight().shape[1]
        if (why := shape_reason(out, in_)) is not None:
            raise ValueError(f"{type(self.layer).__name__}: {why}")

    def _weight(self) -> torch.Tensor:
        masked = getattr(self.layer, "_masked_weight", None)
        return masked() if masked is not None else self.layer.weight

    def describe(self) -> str:
        """Where each GEMM of the layer runs, e.g. 'fwd sparse, dX sparse (pi gather), dW dense'."""
        fwd = "sparse" if self.sparse_forward() else "dense"
        bwd = "dense"
        if self.sparse_backward():
            bwd = "sparse (pi gather)" if self.perm() is not None else "sparse"
        return f"fwd {fwd}, dX {bwd}, dW dense (cuSPARSELt)"

    def _check(self, t: torch.Tensor) -> None:
        if (why := device_reason(t)) is not None:
            raise ValueError(why)

    def _dtype(self, weight: torch.Tensor) -> torch.dtype:
        """The GEMM's dtype: the weight's if 16-bit, else ``compute_dtype`` (both operands)."""
        return weight.dtype if weight.dtype in HALF else self.compute_dtype

    def _config(
        self, pass_: str, m: int, n: int, k: int, dtype: torch.dtype, realisation=None
    ) -> dict:
        """The tuned config for this GEMM (``layer.tuned``, looked up once per shape), or the
        default (alg_id 0, no split-k). ``realisation`` (bwd-data): how pi is realised, in the
        suite's names ("gather": a separate op; "physical": already in pi order)."""
        tuned = getattr(self.layer, "tuned", None)
        if tuned is None:
            return DEFAULT_CONFIG
        cache = layer_cache(self.layer)
        if cache.tuned is not tuned:  # a new file: look up again
            cache.tuned, cache.configs = tuned, {}
        key = (pass_, m, n, k, _dtype_name(dtype), realisation)
        configs = cache.configs
        if key not in configs:
            entry = tuned.lookup(
                "cusparselt", pass_, m, n, k, str(self.pattern), key[4], realisation=realisation
            )
            config = DEFAULT_CONFIG if entry is None else entry.config
            configs[key] = {
                "alg_id": int(config.get("alg_id", 0)),
                "split_k": int(config.get("split_k", 1)),
            }
        return configs[key]

    def _compressed(
        self, what: str, a: torch.Tensor, perm: torch.Tensor | None, build: Callable
    ) -> torch.Tensor:
        """The compressed operand ``what`` ("fwd"/"bwd") of the masked weight ``a``, rebuilt
        only when the layer's weight or pi changed (other objects, or written in place)."""
        cache = layer_cache(self.layer).compressed
        w = self.layer.weight
        objs = (w, perm)
        key = (*_version_key(w), *_version_key(perm), a.dtype, a.device, tuple(a.shape))
        hit = cache.get(what)
        if hit is not None and hit[1] == key and _same_objects(hit[0], objs):
            return hit[2]
        with section("compress"):
            packed = torch._cslt_compress(build().contiguous())
        cache[what] = (_refs(objs), key, packed)
        return packed

    def _mm(self, packed, b2d: torch.Tensor, config: dict) -> torch.Tensor:
        """``b2d @ A^T`` (tokens x m) on cuSPARSELt; tokens padded to a multiple of 8."""
        tokens = b2d.shape[0]
        pad = -tokens % DENSE_ALIGN
        if pad:
            b2d = F.pad(b2d, (0, 0, 0, pad))
        out = torch._cslt_sparse_mm(
            packed,
            b2d.t(),  # the transpose of a contiguous tokens x k matrix: read as op(B)
            transpose_result=True,
            alg_id=config["alg_id"],
            split_k=config["split_k"],
        )
        return out[:tokens] if pad else out

    def forward(self, x, weight, bias):
        if not self.sparse_forward():
            return F.linear(x, weight, bias)
        self._check(weight)
        out, in_ = weight.shape
        dtype = self._dtype(weight)
        x2d = x.reshape(-1, in_).to(dtype).contiguous()
        config = self._config("fwd", out, x2d.shape[0], in_, dtype)
        packed = self._compressed("fwd", weight, None, lambda: weight.detach().to(dtype))
        y = self._mm(packed, x2d, config).to(x.dtype).reshape(*x.shape[:-1], out)
        return y if bias is None else y + bias

    def input_grad(self, dy, weight, x_shape):
        if not self.sparse_backward():
            return dy @ weight
        self._check(weight)
        out, in_ = weight.shape
        perm = self.perm()
        dtype = self._dtype(weight)

        def build() -> torch.Tensor:
            a = weight.detach().to(dtype).t()  # (in x out): K = out
            return a if perm is None else a.index_select(1, perm)  # N:M groups consecutive

        packed = self._compressed("bwd", weight, perm, build)
        dy2d = dy.reshape(-1, out).to(dtype)
        if perm is not None:
            with section("gather"):
                dy2d = dy2d.index_select(1, perm)  # dY's columns in pi order
        dy2d = dy2d.contiguous()
        realisation = "gather" if perm is not None else self._identity_realisation()
        config = self._config("bwd-data", in_, dy2d.shape[0], out, dtype, realisation)
        return self._mm(packed, dy2d, config).to(dy.dtype).reshape(x_shape)

    def _identity_realisation(self) -> str | None:
        """'physical' for a permuting method whose rows are already in pi order; None for a
        method without pi (any entry fits)."""
        spec = getattr(self.layer, "_spec", None)
        permuting = spec is not None and spec.uses_permutation
        return "physical" if permuting and getattr(self.layer, "perm_is_identity", False) else None

    def weight_grad(self, x, dy, w_shape):
        return dy.reshape(-1, w_shape[0]).t() @ x.reshape(-1, w_shape[1])

    def bias_grad(self, dy):
        return dy.reshape(-1, dy.shape[-1]).sum(0)


def cusparselt_linear(layer) -> CusparseltLinearOps:
    """cuSPARSELt for a SparseLinear (CUDA; bfloat16/float16 GEMMs, float32 results for float32
    training). A pattern or shape it cannot run fails here, at construction."""
    spec = layer._spec

    def perm() -> torch.Tensor | None:
        if not spec.uses_permutation or getattr(layer, "perm_is_identity", False):
            return None
        return layer.perm

    return CusparseltLinearOps(
        layer=layer,
        pattern=NMPattern.parse(layer.pattern),
        sparse_forward=lambda: spec.masks is not None,
        sparse_backward=lambda: spec.backward_nm and not layer.backward_as_forward,
        perm=perm,
    )


__all__ = [
    "CusparseltLinearOps",
    "cusparselt_linear",
    "device_reason",
    "layer_cache",
    "pattern_reason",
    "shape_reason",
]
