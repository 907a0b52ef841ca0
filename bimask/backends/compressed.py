"""What the library backends share: a SparseLinear's sparse GEMMs on a library that compresses the
masked weight once and multiplies it with dense activations (cuSPARSELt, CUTLASS sm90).

forward      Y  = X (W*Mf)^T : A = W*Mf (out x in, K = in), compressed; tokens x out
input grad   dX = dY (W*Mb)  : A = (W*Mb)^T (in x out) with its K axis (out) in pi order,
                              compressed; dY's columns gathered into pi order by a separate
                              ``index_select`` (section ``gather``); no gather when
                              ``layer.perm_is_identity`` or the method has no permutation;
weight grad  dW = dY^T X     : dense, torch.

A pass whose mask is not N:M along that GEMM's K (srste's input gradient, the dense method, a
probe that swaps in Mf) runs dense through torch; ``describe()`` says which GEMM runs where.
Compressed operands are cached per layer and reused while the weight (its ``_version`` and
storage), pi and the operand's layout did not change: evaluation loops, gradient accumulation
and repeated forwards compress once. The masks are a function of the weight and pi (tmask's
refresh rebuilds the same mask from the same weight), so they need no key of their own. Nothing
here reads a device tensor on the host.

A library supplies a subclass of :class:`CompressedLinearOps`: its name in tuned-configs files,
its default config and how a file's config is read, its device and shape rules, ``compress``
and ``mm`` (``b2d @ A^T``, tokens x m).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from bimask.patterns import NMPattern
from bimask.profile import section

HALF = (torch.bfloat16, torch.float16)
SPARSE_ALIGN = 16  # rows and columns of the compressed operand (16-bit): in and out features
DENSE_ALIGN = 8  # the dense operand's tokens (16-byte rows of 16-bit values)


def pattern_reason(pattern: NMPattern, library: str) -> str | None:
    """Why 2:4 sparse tensor cores cannot run ``pattern``; None when they can (<= 2 kept in
    every aligned 4: 2:4, 1:4, 2:8, 1:8, 1:16, ...)."""
    if pattern.max_kept_per_aligned_window(4) <= 2:
        return None
    return (
        f"pattern {pattern} can keep {pattern.max_kept_per_aligned_window(4)} of an aligned 4: "
        f"{library} runs 2:4 sparse tensor cores only; train this pattern with backend='torch'"
    )


def shape_reason(
    out_features: int, in_features: int, library: str, advice: bool = True
) -> str | None:
    """Why ``library`` cannot run a Linear of this shape; None when it can (each of in and out
    features is the K of one sparse pass). ``advice``: end with what to do instead."""
    bad = [
        f"{name}={size}"
        for name, size in (("out_features", out_features), ("in_features", in_features))
        if size % SPARSE_ALIGN
    ]
    if not bad:
        return None
    why = (
        f"{library} needs in and out features that are multiples of {SPARSE_ALIGN}, the layer "
        f"has weight ({out_features}, {in_features}) ({', '.join(bad)})"
    )
    return why + (
        ": pad the layer, keep it dense, or train it with backend='torch'" if advice else ""
    )


def pad_tokens(b2d: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(``b2d`` with its rows padded to a multiple of DENSE_ALIGN, the original row count)."""
    tokens = b2d.shape[0]
    pad = -tokens % DENSE_ALIGN
    return (F.pad(b2d, (0, 0, 0, pad)) if pad else b2d), tokens


@dataclass
class _LayerCache:
    """What one layer keeps between calls: compressed operands and tuned configs."""

    compressed: dict[str, tuple[tuple, tuple, object]] = field(default_factory=dict)
    tuned: object = None  # the TunedConfigs the configs below came from
    configs: dict[tuple, object] = field(default_factory=dict)


_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # (layer, backend) cache


def layer_cache(layer, backend: str = "cusparselt") -> _LayerCache:
    """The cache of ``layer`` on ``backend`` (made on first use; it goes with the layer)."""
    per_layer = _CACHES.setdefault(layer, {})
    if backend not in per_layer:
        per_layer[backend] = _LayerCache()
    return per_layer[backend]


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


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class CompressedLinearOps:
    """``LayerOps`` for ``linear`` on a compressing library (a subclass names the library).

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

    NAME: ClassVar[str] = ""  # the backend's name in bimask.backends and tuned-configs files
    LIBRARY: ClassVar[str] = ""  # the library, in messages and describe()

    # --- what a library supplies -------------------------------------------------------------
    def device_reason(self, t: torch.Tensor) -> str | None:
        """Why this tensor's device cannot run the library; None when it can."""
        raise NotImplementedError

    def default_config(self) -> object:
        raise NotImplementedError

    def read_config(self, config: dict) -> object:
        """A tuned-configs entry's config as the library's (ValueError when it is not one)."""
        raise NotImplementedError

    def layout_key(self, config) -> Hashable:
        """What of ``config`` a compressed operand depends on (None: nothing)."""
        return None

    def compress(self, a: torch.Tensor, config) -> object:
        """The library's compressed form of the contiguous 16-bit masked matrix ``a`` (m x k)."""
        raise NotImplementedError

    def mm(self, packed, b2d: torch.Tensor, config) -> torch.Tensor:
        """``b2d @ A^T`` (tokens x m) for the contiguous tokens x k matrix ``b2d``."""
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if self.compute_dtype not in HALF:
            raise ValueError(
                f"{self.LIBRARY} computes in bfloat16 or float16, not {self.compute_dtype}"
            )
        if not (self.sparse_forward() or self.sparse_backward()):
            return  # the dense method: every GEMM runs on torch
        if (why := pattern_reason(self.pattern, self.LIBRARY)) is not None:
            raise ValueError(why)
        out, in_ = self._weight().shape[0], self._weight().shape[1]
        if (why := shape_reason(out, in_, self.LIBRARY)) is not None:
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
        return f"fwd {fwd}, dX {bwd}, dW dense ({self.LIBRARY})"

    def _check(self, t: torch.Tensor) -> None:
        if (why := self.device_reason(t)) is not None:
            raise ValueError(why)

    def _dtype(self, weight: torch.Tensor) -> torch.dtype:
        """The GEMM's dtype: the weight's if 16-bit, else ``compute_dtype`` (both operands)."""
        return weight.dtype if weight.dtype in HALF else self.compute_dtype

    def _config(self, pass_: str, m: int, n: int, k: int, dtype: torch.dtype, realisation=None):
        """The tuned config for this GEMM (``layer.tuned``, looked up once per shape), or the
        default. ``realisation`` (bwd-data): how pi is realised, in the suite's names
        ("gather": a separate op; "physical": already in pi order)."""
        tuned = getattr(self.layer, "tuned", None)
        if tuned is None:
            return self.default_config()
        cache = layer_cache(self.layer, self.NAME)
        if cache.tuned is not tuned:  # a new file: look up again
            cache.tuned, cache.configs = tuned, {}
        key = (pass_, m, n, k, dtype_name(dtype), realisation)
        configs = cache.configs
        if key not in configs:
            entry = tuned.lookup(
                self.NAME, pass_, m, n, k, str(self.pattern), key[4], realisation=realisation
            )
            configs[key] = self.default_config() if entry is None else self._read(entry, tuned)
        return configs[key]

    def _read(self, entry, tuned):
        try:
            return self.read_config(entry.config)
        except ValueError as err:
            raise ValueError(
                f"tuned configs {tuned.where}: {self.NAME} entry {entry.config}: {err}; re-tune "
                "and re-export (python -m suite export-tuned RUN --out FILE)"
            ) from None

    def _compressed(
        self, what: str, a: torch.Tensor, perm: torch.Tensor | None, config, build: Callable
    ):
        """The compressed operand ``what`` ("fwd"/"bwd") of the masked weight ``a``, rebuilt
        only when the layer's weight or pi changed (other objects, or written in place) or the
        config reads another layout."""
        cache = layer_cache(self.layer, self.NAME).compressed
        w = self.layer.weight
        objs = (w, perm)
        key = (*_version_key(w), *_version_key(perm), a.dtype, a.device, tuple(a.shape),
               self.layout_key(config))  # fmt: skip
        hit = cache.get(what)
        if hit is not None and hit[1] == key and _same_objects(hit[0], objs):
            return hit[2]
        with section("compress"):
            packed = self.compress(build().contiguous(), config)
        cache[what] = (_refs(objs), key, packed)
        return packed

    def forward(self, x, weight, bias):
        if not self.sparse_forward():
            return F.linear(x, weight, bias)
        self._check(weight)
        out, in_ = weight.shape
        dtype = self._dtype(weight)
        x2d = x.reshape(-1, in_).to(dtype).contiguous()
        config = self._config("fwd", out, x2d.shape[0], in_, dtype)
        packed = self._compressed("fwd", weight, None, config, lambda: weight.detach().to(dtype))
        y = self.mm(packed, x2d, config).to(x.dtype).reshape(*x.shape[:-1], out)
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

        dy2d = dy.reshape(-1, out).to(dtype)
        if perm is not None:
            with section("gather"):
                dy2d = dy2d.index_select(1, perm)  # dY's columns in pi order
        dy2d = dy2d.contiguous()
        realisation = "gather" if perm is not None else self._identity_realisation()
        config = self._config("bwd-data", in_, dy2d.shape[0], out, dtype, realisation)
        packed = self._compressed("bwd", weight, perm, config, build)
        return self.mm(packed, dy2d, config).to(dy.dtype).reshape(x_shape)

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


def library_linear(cls: type[CompressedLinearOps], layer) -> CompressedLinearOps:
    """``cls`` for a SparseLinear (CUDA; bfloat16/float16 GEMMs, float32 results for float32
    training). A pattern or shape the library cannot run fails here, at construction."""
    spec = layer._spec

    def perm() -> torch.Tensor | None:
        if not spec.uses_permutation or getattr(layer, "perm_is_identity", False):
            return None
        return layer.perm

    return cls(
        layer=layer,
        pattern=NMPattern.parse(layer.pattern),
        sparse_forward=lambda: spec.masks is not None,
        sparse_backward=lambda: spec.backward_nm and not layer.backward_as_forward,
        perm=perm,
    )
