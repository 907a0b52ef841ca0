"""SparseLinear and SparseConv2d: drop-in layers trained with one of the mask methods."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from bimask.autograd import dense_op, sparse_op
from bimask.backends import layer_ops
from bimask.backward_mask import check_perm
from bimask.layout import check_conv_order, from_gemm, to_gemm
from bimask.masks import nm_mask_2d
from bimask.methods import MaskState, get_method
from bimask.patterns import NMPattern
from bimask.permutations import PERMUTATIONS, find_permutation
from bimask.profile import section
from bimask.realisation import check_realisation
from bimask.tuned import TunedConfigs, load_tuned


def unsupported_reason(
    weight_shape: tuple[int, ...], pattern: NMPattern, method: str, conv_order: str = "nhwc"
) -> str | None:
    """Why a weight of this shape cannot use ``method`` at ``pattern``; None when it can."""
    spec = get_method(method)
    if spec.masks is None:
        return None
    out = weight_shape[0]
    k = math.prod(weight_shape[1:])
    if len(weight_shape) == 4 and conv_order == "nhwc" and weight_shape[1] % pattern.m:
        return f"input channels {weight_shape[1]} not a multiple of M={pattern.m} (NHWC groups)"
    if k % pattern.m:
        return f"reduction dimension K={k} not a multiple of M={pattern.m}"
    if spec.groups_out and out % pattern.m:
        return f"output dimension {out} not a multiple of M={pattern.m} ({method} groups rows)"
    return None


_HOST = "_bimask_host"  # attribute of a scalar buffer: its value, kept on the host


def host_value(buf: torch.Tensor):
    """The value of a scalar buffer (``step``, ``masks_ready``) without a device read per step:
    read once (then kept in step by :func:`set_host_value`), again after ``load_state_dict``
    or a move to another device (a new tensor). The copy lives on the buffer object, so layers
    that share a buffer (tied weights) share it too. Write these buffers through the layer's
    methods or ``load_state_dict``, not in place by hand."""
    value = buf.__dict__.get(_HOST)
    if value is None:
        value = buf.item()  # one host sync, not one per step
        setattr(buf, _HOST, value)
    return value


def set_host_value(buf: torch.Tensor, value) -> None:
    setattr(buf, _HOST, value)


class SparseMixin:
    """Mask bookkeeping shared by the sparse layers (buffers are part of ``state_dict()``).

    A training step reads no device tensor on the host: the step counter and ``masks_ready``
    have host copies (:func:`host_value`), and pi is checked when it is loaded, not per step.
    """

    def _setup_sparsity(
        self,
        pattern,
        method: str,
        permutation: str,
        perm_every: int,
        decay: float,
        conv_order: str = "nhwc",
        permutation_options: dict | None = None,
        tmask_exact: bool = True,
        seed: int = 0,
        backend: str = "torch",
        weight: torch.Tensor | None = None,
        tuned: TunedConfigs | str | Path | None = None,
        perm_realisation: str = "gather",
    ) -> None:
        """Validate the settings and register the mask buffers for ``weight`` (default
        ``self.weight``; a mask holder passes the weight it masks). ``tuned``: a sweep's
        winners (:mod:`bimask.tuned`, or the path of its file) that the backend reads."""
        weight = self._masked_weight() if weight is None else weight
        self.pattern = NMPattern.parse(pattern)
        self.method = method
        spec = get_method(method)
        if permutation not in PERMUTATIONS:
            raise ValueError(
                f"unknown permutation strategy {permutation!r}; "
                f"choose one of {sorted(PERMUTATIONS)}"
            )
        if isinstance(perm_every, bool) or not isinstance(perm_every, int) or perm_every < 1:
            raise ValueError(f"perm_every must be a positive integer, got {perm_every!r}")
        if not (isinstance(decay, (int, float)) and math.isfinite(decay) and decay >= 0):
            raise ValueError(f"decay must be a finite number >= 0, got {decay!r}")
        check_conv_order(conv_order)
        check_realisation(self, perm_realisation, spec.uses_permutation, method)
        reason = unsupported_reason(tuple(weight.shape), self.pattern, method, conv_order)
        if reason:
            raise ValueError(
                f"{type(self).__name__} with weight {tuple(weight.shape)} cannot use "
                f"{method} at {self.pattern}: {reason}"
            )
        self.permutation, self.perm_every, self.decay = permutation, perm_every, float(decay)
        self.conv_order, self.tmask_exact, self.seed = conv_order, tmask_exact, seed
        self.permutation_options = dict(permutation_options or {})
        self.backend = backend
        self.tuned = load_tuned(tuned)  # read by the backend per GEMM shape; None: defaults
        self._spec = spec
        # how pi is realised (bimask.realisation); perm_is_identity: a host-side bool backends
        # read to skip the gather (True: backward groups are consecutive rows, no tensor read)
        self.perm_realisation = perm_realisation
        self.perm_is_identity = not spec.uses_permutation or (
            perm_realisation == "physical" or permutation == "identity"
        )
        # host wall time spent building masks and permutations (accounting). On CUDA it counts
        # launches, not the GPU work (no sync per step): bimask.profile gives the real breakdown
        self.mask_time_s = 0.0
        self.backward_as_forward = False  # probe switch: use Mf in the backward (srste's dX)
        device = weight.device
        out = weight.shape[0]
        self.register_buffer("perm", torch.arange(out, device=device))
        self.register_buffer("step", torch.zeros((), dtype=torch.long, device=device))
        set_host_value(self.step, 0)
        if spec.masks is not None:
            ones = torch.ones(weight.shape, dtype=torch.bool, device=device)
            self.register_buffer("mask_forward", ones)
            self.register_buffer("mask_backward", ones.clone())
            self.register_buffer("masks_ready", torch.zeros((), dtype=torch.bool, device=device))
            set_host_value(self.masks_ready, False)
        self._ops()  # an unknown backend, or one that cannot run this layer, fails here

    def _masked_weight(self) -> torch.Tensor:
        return self.weight

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        """Load, then drop the host copies of the scalar buffers (read again on next use) and
        check the loaded pi once (the steps do not)."""
        super()._load_from_state_dict(state_dict, prefix, *args)
        for name in ("step", "masks_ready"):
            if name in self._buffers:
                self._buffers[name].__dict__.pop(_HOST, None)
        error_msgs = args[-1]
        if prefix + "perm" in state_dict and "perm" in self._buffers:
            try:
                check_perm(self.perm, self._masked_weight().shape[0])
            except ValueError as err:
                error_msgs.append(f"{prefix}perm: {err}")

    def _refresh_permutation(self, w2d: torch.Tensor) -> None:
        mf = to_gemm(self.mask_forward, self.conv_order)
        if not host_value(self.masks_ready):
            mf = nm_mask_2d(w2d, self.pattern)
        with section("permutation"):
            perm = find_permutation(
                w2d,
                mf,
                self.pattern,
                self.permutation,
                seed=self.seed * 1_000_003 + host_value(self.step),
                **self.permutation_options,
            )
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(perm, src=0)  # pi must be identical on every rank
        self.perm.copy_(perm)
        self.perm_is_identity = self.permutation == "identity"  # until a physical reorder

    @torch.no_grad()
    def compute_masks(self, refresh: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward masks (weight-shaped, bool) for the current weights."""
        weight = self._masked_weight()
        w2d = to_gemm(weight.detach(), self.conv_order)
        if refresh and self._spec.uses_permutation and self.perm_realisation == "gather":
            self._refresh_permutation(w2d)  # physical: bimask.physical searches and reorders
        cached = None
        if host_value(self.masks_ready):  # a copy: the result is written back into mask_forward
            cached = to_gemm(self.mask_forward, self.conv_order).clone()
        state = MaskState(perm=self.perm, cached_mask=cached, tmask_exact=self.tmask_exact)
        mf2d, mb2d = self._spec.masks(w2d, self.pattern, state, refresh)
        mf = from_gemm(mf2d, weight.shape, self.conv_order)
        mb = mf if mb2d is mf2d else from_gemm(mb2d, weight.shape, self.conv_order)
        self.mask_forward.copy_(mf)
        self.mask_backward.copy_(mb)
        self.masks_ready.fill_(True)
        set_host_value(self.masks_ready, True)
        return self.mask_forward, self.mask_backward

    def _sparse_forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self._ops()
        if self._spec.masks is None:  # dense: the same GEMMs, each in its profile section
            return dense_op(x, self.weight, self.bias, ops)
        mf, mb = self.step_masks()
        return sparse_op(x, self.weight, self.bias, mf, mb, self.decay, ops)

    def step_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks for this forward pass (training: counts a step, may refresh the
        permutation every ``perm_every`` steps; evaluation: never searches). No host sync:
        ``mask_time_s`` is the host's wall time (on CUDA: the launches)."""
        t0 = time.perf_counter()
        with section("masks"):
            if self.training:
                step = host_value(self.step)
                mf, mb = self.compute_masks(step % self.perm_every == 0)
                self.step.add_(1)
                set_host_value(self.step, step + 1)
            else:  # evaluation: masks from the current weights, never a permutation search
                mf, mb = self.compute_masks(refresh=False)
        self.mask_time_s += time.perf_counter() - t0
        if self.backward_as_forward:
            mb = mf
        return mf, mb

    def sparsity_repr(self) -> str:
        return (
            f"pattern={self.pattern}, method={self.method}, permutation={self.permutation}, "
            f"perm_every={self.perm_every}, decay={self.decay}"
            + (", perm_realisation=physical" if self.perm_realisation == "physical" else "")
        )


class SparseLinear(SparseMixin, nn.Linear):
    """``nn.Linear`` trained with an N:M mask method (``method`` in ``bimask.METHODS``).

    ``perm_realisation="physical"`` (bimask only; default ``"gather"``, the paper's) makes the
    Bi-Mask permutation a physical reordering of this layer's rows and its consumer's input
    columns, done by :class:`bimask.physical.PhysicalPermutations` between optimizer steps: a
    different method (the consumer's masks change), see :mod:`bimask.realisation`."""

    _dense_class = nn.Linear

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        pattern: str | NMPattern = "2:4",
        method: str = "bimask",
        permutation: str = "random",
        perm_every: int = 100,
        decay: float = 2e-4,
        device=None,
        dtype=None,
        **sparse_options,
    ) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._setup_sparsity(pattern, method, permutation, perm_every, decay, **sparse_options)

    def _ops(self):
        return layer_ops("linear", self.backend, layer=self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._sparse_forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.sparsity_repr()}"


class SparseConv2d(SparseMixin, nn.Conv2d):
    """``nn.Conv2d`` (groups=1, zero padding) trained with an N:M mask method."""

    _dense_class = nn.Conv2d

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        pattern: str | NMPattern = "2:4",
        method: str = "bimask",
        permutation: str = "random",
        perm_every: int = 100,
        decay: float = 2e-4,
        device=None,
        dtype=None,
        **sparse_options,
    ) -> None:
        if groups != 1:
            raise ValueError(f"SparseConv2d supports groups=1 only, got groups={groups}")
        if padding_mode != "zeros" or isinstance(padding, str):
            raise ValueError(
                "SparseConv2d needs numeric zero padding (padding_mode='zeros', padding an int "
                f"or pair), got padding={padding!r}, padding_mode={padding_mode!r}"
            )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        self._setup_sparsity(pattern, method, permutation, perm_every, decay, **sparse_options)

    def _ops(self):
        return layer_ops(
            "conv2d",
            self.backend,
            layer=self,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._sparse_forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.sparsity_repr()}"
