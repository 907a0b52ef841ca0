"""Training GEMMs of a Linear layer on this package's sparse kernels (the ``kernels`` backend of
``bimask.backends``, reached only through that seam).

forward      Y  = X (W*Mf)^T : compress W*Mf (pack only; it is already masked), then the sparse
                              kernel with B = X and the output written transposed;
input grad   dX = dY (W*Mb)  : compress (W*Mb)^T with its K axis (out) in pi order, then the
                              sparse kernel reading dY's columns through pi (in-kernel gather);
weight grad  dW = dY^T X     : dense, cuBLAS.

A pass whose mask is not N:M along that GEMM's K (srste's input gradient, the dense method, a
probe that swaps in Mf) runs dense through torch; ``describe()`` says which GEMM runs where.
The kernels take bfloat16 or float16: other inputs are cast to ``compute_dtype`` for the GEMM
(float32 accumulation, float32 results for float32 training). No step waits for the GPU: a
compressed matrix that is not N:M sets a device flag that ``check_violations()`` reads (see
``kernels.violations`` for when that happens automatically).

Tuned configs: ``config_for(pass_, m, n, k, dtype, realisation)`` (built by the backend seam
from a sweep's winners, see ``bimask.tuned``) gives the (family, Config) of one GEMM shape, or
None; a winner whose family does not run on this device, or that does not fit its shared
memory, is passed over for the default. :func:`tuned_kernel_config` turns an entry's config
dict into a kernel Config (checked against the family's space, cached per config).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels import device as kdevice
from kernels import validate, violations
from kernels.format import Compressed, check_sparse_pattern
from kernels.ops import compress_gpu, nm_gemm
from kernels.registry import GEMM_FAMILIES, VARIANTS
from kernels.space import Config
from kernels.violations import check_violations

HALF = (torch.bfloat16, torch.float16)


def default_family(device: torch.device) -> str:
    """The fastest family this device runs: sm90 (wgmma) on Hopper, else sm80."""
    cc = kdevice.device_info(device).cc
    return "sm90" if VARIANTS[GEMM_FAMILIES["sm90"]["sparse"]].runs_on(cc) is None else "sm80"


def tuned_kernel_config(config: Mapping) -> tuple[str, Config]:
    """(family, kernel Config) of a tuned-configs entry's config: its ``family`` and the
    kernel's tunables (the suite-only ``perm_realisation`` dropped, as the suite's kernel
    backends do). ValueError when it is not a valid config of that family's sparse kernel (a
    file tuned with other kernel sources, say). Cached per config."""
    return _tuned_kernel_config(json.dumps(dict(config), sort_keys=True))


@functools.cache
def _tuned_kernel_config(key: str) -> tuple[str, Config]:
    params = json.loads(key)
    family = params.pop("family", None)
    params.pop("perm_realisation", None)
    if family not in GEMM_FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; these exist: {sorted(GEMM_FAMILIES)}")
    variant = VARIANTS[GEMM_FAMILIES[family]["sparse"]]
    return family, variant.space().checked(params, variant.name)


@functools.cache
def _runs_here(family: str, config: Config, device: torch.device) -> bool:
    """Whether ``family`` runs on ``device`` and ``config`` fits its shared memory."""
    info = kdevice.device_info(device)
    variant = VARIANTS[GEMM_FAMILIES[family]["sparse"]]
    return variant.runs_on(info.cc) is None and variant.space(info.smem_optin).allows(
        config.to_dict()
    )


def _out(t: torch.Tensor) -> torch.dtype | None:
    """float32 results for float32 training (the kernels accumulate in float32 anyway)."""
    return torch.float32 if t.dtype == torch.float32 else None


@dataclass
class KernelLinearOps:
    """``LayerOps`` for ``linear`` on the sparse kernels.

    ``sparse_forward`` / ``sparse_backward`` say whether the layer's masks make that GEMM N:M
    along its K (callables: a probe may switch the backward mask at run time); ``perm`` returns
    the layer's row permutation pi (or None: identity groups).
    """

    pattern: str
    sparse_forward: Callable[[], bool]
    sparse_backward: Callable[[], bool]
    perm: Callable[[], torch.Tensor | None]
    family: str | None = None  # None: default_family of the weight's device
    config: Config | None = None  # None: the family's registered default
    compute_dtype: torch.dtype = torch.bfloat16
    # (pass_, m, n, k, dtype, realisation) -> (family, Config) | None: a sweep's winner for
    # this GEMM shape; used unless ``config`` is given (None: no winners, the defaults)
    config_for: Callable[..., tuple[str, Config] | None] | None = None
    # a profiler's section(name) context (bimask.profile.section, handed in by the backend seam:
    # this package never imports bimask); the compressions run inside section("compress")
    section: Callable[[str], contextlib.AbstractContextManager] = contextlib.nullcontext

    def __post_init__(self) -> None:
        try:
            check_sparse_pattern(self.pattern)
        except ValueError as err:  # 4:8 and friends: say what to train with instead
            raise ValueError(f"{err}; train this pattern with backend='torch'") from None
        if self.family is not None and self.family not in GEMM_FAMILIES:
            raise ValueError(f"unknown kernel family {self.family!r}: {sorted(GEMM_FAMILIES)}")
        if self.compute_dtype not in HALF:
            raise ValueError(
                f"the kernels compute in bfloat16 or float16, not {self.compute_dtype}"
            )

    def describe(self) -> str:
        """Where each GEMM of the layer runs, e.g. 'fwd sparse, dX sparse (pi), dW dense'."""
        fwd = "sparse" if self.sparse_forward() else "dense"
        bwd = "dense"
        if self.sparse_backward():
            bwd = "sparse (pi)" if self.perm() is not None else "sparse"
        return f"fwd {fwd}, dX {bwd}, dW dense"

    def _setup(self, t: torch.Tensor) -> tuple[str, Config]:
        if t.device.type != validate.DEVICE_TYPE:
            raise ValueError(
                "the kernels backend runs on CUDA tensors; use backend='torch' on the CPU"
            )
        family = self.family or default_family(t.device)
        config = self.config or VARIANTS[GEMM_FAMILIES[family]["sparse"]].default()
        return family, config

    def _choose(self, t, pass_: str, shape: tuple[int, int, int], realisation=None):
        """(family, Config) for one GEMM: the tuned winner of this shape where there is one
        that runs here (and agrees with a given ``family``), else :meth:`_setup`'s default."""
        family, config = self._setup(t)
        if self.config_for is None or self.config is not None:
            return family, config
        dtype = str(t.dtype if t.dtype in HALF else self.compute_dtype).removeprefix("torch.")
        tuned = self.config_for(pass_, *shape, dtype, realisation)
        if tuned is None or (self.family is not None and tuned[0] != self.family):
            return family, config
        return tuned if _runs_here(tuned[0], tuned[1], t.device) else (family, config)

    def _half(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.dtype in HALF else t.to(self.compute_dtype)

    def _compress(self, a: torch.Tensor, what: str) -> Compressed:
        """Pack an already-masked matrix; a violation goes to the device's flag, unread here
        (no host sync: ``kernels.violations`` says when it is checked)."""
        with self.section("compress"):
            comp = compress_gpu(a, "2:4", masked=True, error=violations.flag(a.device))
        violations.compressed(a.device, f"{what} of shape {tuple(a.shape)}")
        return comp

    def forward(self, x, weight, bias):
        if not self.sparse_forward():
            return F.linear(x, weight, bias)
        x2d = self._half(x.reshape(-1, x.shape[-1]))
        out, inp = weight.shape
        family, config = self._choose(x2d, "fwd", (out, x2d.shape[0], inp))
        comp = self._compress(self._half(weight).contiguous(), "the forward's W*Mf")
        y = nm_gemm(
            comp, x2d.contiguous(), config, transpose_out=True, family=family, out_dtype=_out(x)
        )
        y = y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])
        return y if bias is None else y + bias

    def input_grad(self, dy, weight, x_shape):
        if not self.sparse_backward():
            return dy @ weight
        perm = self.perm()
        tokens = dy.numel() // dy.shape[-1]
        realisation = "physical" if perm is None else "in_kernel"  # the suite's names
        shape = (weight.shape[1], tokens, weight.shape[0])  # m=in, n=tokens, k=out
        family, config = self._choose(dy, "bwd-data", shape, realisation)
        a = self._half(weight).t()  # (in x out): K = out
        if perm is not None:
            a = a.index_select(1, perm)  # N:M groups consecutive along K
        comp = self._compress(a.contiguous(), "the input gradient's (W*Mb)^T")
        dy2d = self._half(dy.reshape(-1, dy.shape[-1])).contiguous()
        gather = None if perm is None else perm.to(torch.int32)
        dx = nm_gemm(
            comp, dy2d, config, perm=gather, transpose_out=True, family=family, out_dtype=_out(dy)
        )
        return dx.to(dy.dtype).reshape(x_shape)

    def weight_grad(self, x, dy, w_shape):
        return dy.reshape(-1, w_shape[0]).t() @ x.reshape(-1, w_shape[1])

    def bias_grad(self, dy):
        return dy.reshape(-1, dy.shape[-1]).sum(0)


__all__ = ["KernelLinearOps", "check_violations", "default_family", "tuned_kernel_config"]
