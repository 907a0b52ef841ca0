"""Swap a model's Linear and Conv2d layers for their sparse versions, in place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from bimask.backends import BACKENDS
from bimask.layers import SparseConv2d, SparseLinear, SparseMixin, unsupported_reason
from bimask.patterns import NMPattern

log = logging.getLogger("bimask")


@dataclass(frozen=True)
class LayerDecision:
    name: str
    kind: str
    sparse: bool
    reason: str


def default_dense_layers(model: nn.Module) -> set[str]:
    """The paper's choice: the first conv (stem) and the classifier (last Linear) stay dense."""
    convs = [n for n, m in model.named_modules() if type(m) is nn.Conv2d]
    linears = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    return set(convs[:1]) | set(linears[-1:])


def _why_dense(module: nn.Module, pattern: NMPattern, method: str, conv_order: str) -> str | None:
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped/depthwise conv (groups={module.groups}) is not supported"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "only numeric zero padding is supported"
    return unsupported_reason(tuple(module.weight.shape), pattern, method, conv_order)


def _sparse_copy(module: nn.Module, pattern, method: str, **options) -> nn.Module:
    w = module.weight
    kw = dict(pattern=pattern, method=method, device=w.device, dtype=w.dtype, **options)
    if isinstance(module, nn.Linear):
        new = SparseLinear(module.in_features, module.out_features, module.bias is not None, **kw)
    else:
        new = SparseConv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            1,
            module.bias is not None,
            **kw,
        )
    new.load_state_dict(module.state_dict(), strict=False)
    new.train(module.training)
    return new


def _already_sparse(name: str, module: SparseMixin, wanted: dict) -> LayerDecision:
    """A layer made sparse by an earlier call: a no-op when the settings agree, else an error."""
    have = {k: getattr(module, k) for k in wanted}
    have["pattern"] = str(have["pattern"])
    if diff := {k: (have[k], v) for k, v in wanted.items() if have[k] != v}:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in diff.items())
        raise ValueError(
            f"sparsify: layer {name!r} is already sparse with different settings ({what}); "
            "sparsify a fresh (dense) copy of the model to change them"
        )
    kind = type(module).__name__
    return LayerDecision(name, kind, True, f"{module.method} {module.pattern}: already sparse")


def sparsify(
    model: nn.Module,
    pattern: str | NMPattern = "2:4",
    method: str = "bimask",
    permutation: str = "random",
    perm_every: int = 100,
    *,
    decay: float = 2e-4,
    keep_dense: set[str] | None = None,
    conv_order: str = "nhwc",
    backend: str = "torch",
    **options,
) -> list[LayerDecision]:
    """Replace every eligible ``nn.Linear``/``nn.Conv2d`` of ``model`` in place.

    ``keep_dense`` names modules to leave dense (default: the first conv and the classifier).
    Layers that cannot be grouped are left dense and the reason is logged. ``backend`` runs the
    layers' GEMMs (``bimask.backends``); a layer kind it has no GEMMs for (conv2d on
    ``kernels``) runs on ``torch``, and its decision says so. Returns one decision per
    Linear/Conv2d layer.
    """
    pattern = NMPattern.parse(pattern)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    dense = default_dense_layers(model) if keep_dense is None else set(keep_dense)
    unknown = dense - {n for n, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"keep_dense names modules the model does not have: {sorted(unknown)}")
    decisions = []
    wanted = dict(
        pattern=str(pattern),
        method=method,
        permutation=permutation,
        perm_every=perm_every,
        conv_order=conv_order,
    )
    already = {  # checked before any layer changes: a conflict leaves the model as it was
        n: _already_sparse(n, m, wanted)
        for n, m in model.named_modules()
        if isinstance(m, SparseMixin)
    }
    for name, module in list(model.named_modules()):
        if name in already:
            decisions.append(already[name])
            continue
        if type(module) not in (nn.Linear, nn.Conv2d):
            continue
        kind = type(module).__name__
        reason = None
        if name in dense:
            reason = (
                "kept dense by request"
                if keep_dense is not None
                else ("kept dense by default (stem conv / classifier, as in the paper)")
            )
        reason = reason or _why_dense(module, pattern, method, conv_order)
        if reason:
            log.info("bimask: %s (%s) stays dense: %s", name, kind, reason)
            decisions.append(LayerDecision(name, kind, False, reason))
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        gemm_kind = "linear" if isinstance(module, nn.Linear) else "conv2d"
        layer_backend = backend if gemm_kind in BACKENDS[backend] else "torch"
        note = (
            "" if layer_backend == backend else f"; {gemm_kind} GEMMs on torch ({backend} has none)"
        )
        new = _sparse_copy(
            module,
            pattern,
            method,
            permutation=permutation,
            perm_every=perm_every,
            decay=decay,
            conv_order=conv_order,
            backend=layer_backend,
            **options,
        )
        setattr(parent, attr, new)
        where = new._ops().describe()
        decisions.append(LayerDecision(name, kind, True, f"{method} {pattern}: {where}{note}"))
    return decisions
