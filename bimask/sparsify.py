"""Make a model's GEMM layers N:M sparse in place, with one decision per weight matrix.

Every weight matrix of the model gets a :class:`LayerDecision`: sparse or dense, why, and where
its GEMMs run. Layers keep their objects (see :mod:`bimask.swap`); ``nn.MultiheadAttention``
projections run the Bi-Mask GEMMs through :mod:`bimask.attention`. All decisions are made, and
every error raised, before the first layer changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn
from torch.nn.parameter import is_lazy

from bimask.attention import (
    FUSED_SWITCHES,
    disable_fused_encoder,
    make_sparse_attention,
    projection_weights,
)
from bimask.backends import BACKENDS, pattern_refusal, shape_refusal
from bimask.layers import SparseMixin, unsupported_reason
from bimask.methods import get_method
from bimask.patterns import NMPattern
from bimask.physical import find_pairs
from bimask.realisation import PERM_REALISATIONS
from bimask.roles import Candidate, Selector, find_candidates, matches
from bimask.roles import dense_roles as find_dense_roles
from bimask.swap import SPARSE_BUFFERS, make_sparse, own_forward
from bimask.tuned import TunedConfigs, load_tuned

log = logging.getLogger("bimask")
OWN_FORWARD = "fwd and dX with W*Mf in the layer's own forward (no backward mask), dW dense"
DENSE_GEMMS = "fwd, dX, dW on torch (dense, the layer's own forward)"
_UNSUPPORTED = {
    "conv": "only Conv2d has sparse GEMMs here (no Conv1d/Conv3d/transposed conv)",
    "embedding": "a lookup, not a GEMM",
}


@dataclass(frozen=True)
class LayerDecision:
    """One weight matrix: ``name`` is its module (or the attention module's weight), ``kind``
    the module's class, ``reason`` why, ``weight`` the parameter's name in the model, ``gemms``
    where forward, dX and dW run."""

    name: str
    kind: str
    sparse: bool
    reason: str
    weight: str = ""
    gemms: str = ""


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _why_dense(module: nn.Module, weight, pattern: NMPattern, method: str, conv_order: str):
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped/depthwise conv (groups={module.groups}) is not supported"
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return "only numeric zero padding is supported"
    return unsupported_reason(tuple(weight.shape), pattern, method, conv_order)


def _layout(kind: str) -> str:
    """Layers that can share one mask of a tied weight: the same GEMM view, mask buffers of
    their own (attention input projections keep theirs in a holder)."""
    return {"transposed_linear": "transposed", "attention": "attention"}.get(kind, "plain")


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
    where = "already sparse"
    return LayerDecision(name, kind, True, f"{module.method} {module.pattern}: {where}", name)


def check_materialised(model: nn.Module) -> None:
    """Lazy modules have no weight shape to decide on until they have run once."""
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if is_lazy(p):
            raise ValueError(
                f"sparsify: {name!r} is not materialised yet (a lazy module); run one forward "
                "pass with a real input first, then sparsify"
            )


def sparsify(
    model: nn.Module,
    pattern: str | NMPattern = "2:4",
    method: str = "bimask",
    permutation: str = "random",
    perm_every: int = 100,
    *,
    decay: float = 2e-4,
    keep_dense: set[str] | None = None,
    include: Selector = None,
    exclude: Selector = None,
    output: str | None = None,
    example_input=None,
    dense_roles: tuple[str, ...] = ("first_conv", "output"),
    conv_order: str = "nhwc",
    backend: str = "torch",
    tuned: TunedConfigs | str | Path | None = None,
    perm_realisation: str = "gather",
    **options,
) -> list[LayerDecision]:
    """Make every eligible GEMM weight of ``model`` N:M sparse, in place; one decision each.

    Dense by default (``dense_roles``): the first convolution and the output layer, found by
    role (``example_input=`` traces the model once; ``output=`` names the output layer).
    ``keep_dense`` names modules to keep dense instead of that rule; ``include`` (patterns or a
    predicate ``(name, module)``) sparsifies only what it matches, roles aside; ``exclude``
    keeps what it matches dense. Shapes that cannot be grouped stay dense with the reason.
    ``backend`` runs the GEMMs (``bimask.backends``); a kind it lacks runs on ``torch``.
    ``tuned`` (a :class:`bimask.tuned.TunedConfigs` or the path of its file, read once) gives
    the backend a sweep's winners per GEMM shape (``python -m suite export-tuned``).
    ``perm_realisation="physical"`` (bimask only; a different method, see
    :mod:`bimask.physical`) reorders every sparse Linear whose consumer is known (Linear ->
    elementwise -> Linear) with that consumer every ``perm_every`` steps; the other layers
    gather (``"gather"``, the default and the paper's), each decision says which and why, and a
    model where no layer qualifies is an error. The training loop must then call
    :class:`bimask.physical.PhysicalPermutations` between optimizer steps.
    """
    pattern = NMPattern.parse(pattern)
    tuned = load_tuned(tuned)  # a bad file fails here, before any layer changes
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(BACKENDS)}")
    if perm_realisation not in PERM_REALISATIONS:
        raise ValueError(
            f"unknown perm_realisation {perm_realisation!r}; "
            f"choose one of {sorted(PERM_REALISATIONS)}"
        )
    if perm_realisation == "physical" and not get_method(method).uses_permutation:
        raise ValueError(
            f"perm_realisation='physical' reorders rows by the Bi-Mask permutation; method "
            f"{method!r} has none: use method='bimask' or perm_realisation='gather'"
        )
    if get_method(method).masks is not None and (why := pattern_refusal(backend, pattern)):
        raise ValueError(why)  # every layer would fall back: say so before any change
    check_materialised(model)
    modules = dict(model.named_modules())
    asked = (set(keep_dense) if keep_dense is not None else set()) | ({output} - {None})
    if unknown := asked - set(modules):
        raise ValueError(
            f"keep_dense/output name modules the model does not have: {sorted(unknown)}"
        )
    wanted = dict(
        pattern=str(pattern),
        method=method,
        permutation=permutation,
        perm_every=perm_every,
        conv_order=conv_order,
    )
    already = {  # checked before any layer changes: a conflict leaves the model as it was
        n: _already_sparse(n, m, wanted) for n, m in modules.items() if isinstance(m, SparseMixin)
    }
    candidates = find_candidates(model)
    roles = {}
    if keep_dense is None and include is None:
        roles = find_dense_roles(model, candidates, dense_roles, output, example_input)
    settings = dict(
        pattern=pattern, method=method, permutation=permutation, perm_every=perm_every,
        decay=decay, conv_order=conv_order, tuned=tuned, **options,
    )  # fmt: skip

    def rule(named: list[tuple[str, nn.Module]]) -> str | None:
        if any(matches(exclude, n, m) for n, m in named):
            return "excluded by exclude="
        if keep_dense is not None and any(n in keep_dense for n, _ in named):
            return "kept dense by request"
        if include is not None and not any(matches(include, n, m) for n, m in named):
            return "not matched by include="
        return next((roles[n] for n, _ in named if n in roles), None)

    plan: list[tuple[LayerDecision, Candidate, str]] = []  # decision, candidate, weight attr
    owner: dict[int, str] = {}  # id(weight) -> name of the sparse layer that masks it
    layout: dict[int, str] = {}  # id(weight) -> how its owner masks it (one mask per weight)
    for c in candidates:
        attrs = projection_weights(c.module) if c.kind == "attention" else ["weight"]
        for attr in attrs:
            weight = getattr(c.module, attr)
            name = _join(c.name, attr) if c.kind == "attention" else c.name
            full, kind = _join(c.name, attr), type(c.module).__name__
            prior = already.get(name) or already.get(f"{name}_mask")
            if prior or (c.kind == "attention" and hasattr(type(c.module), "_dense_class")):
                why = prior.reason if prior else "kept dense by an earlier sparsify"
                plan.append((LayerDecision(name, kind, bool(prior), why, full), c, attr))
                continue
            named = [(name, c.module), (c.name, c.module)]
            if c.parent:
                named.append((c.parent, modules[c.parent]))
            reason = _UNSUPPORTED.get(c.kind) or rule(named)
            gemm_view = weight.t() if c.kind == "transposed_linear" else weight
            reason = reason or _why_dense(c.module, gemm_view, pattern, method, conv_order)
            if reason is None and id(weight) in owner and layout[id(weight)] != _layout(c.kind):
                reason = f"weight tied with {owner[id(weight)]}, masked there in another layout"
            if reason:
                plan.append((LayerDecision(name, kind, False, reason, full, DENSE_GEMMS), c, attr))
                continue
            owner.setdefault(id(weight), name)
            layout.setdefault(id(weight), _layout(c.kind))
            plan.append((LayerDecision(name, kind, True, "", full), c, attr))
    for i, (d, c, attr) in enumerate(plan):  # a dense user of a weight a sparse layer masks
        tied = owner.get(id(getattr(c.module, attr)))
        if not d.sparse and tied and tied != d.name:
            why = f"{d.reason} (weight tied with {tied}, which masks it; read dense here)"
            plan[i] = (replace(d, reason=why), c, attr)

    done = {id(getattr(c.module, attr)) for _, c, attr in plan}
    realise = _realisations(model, plan, perm_realisation, perm_every)
    decisions = _apply(model, plan, settings, backend, owner, realise)
    for full, p in model.named_parameters(remove_duplicate=False):
        if p.dim() >= 2 and full not in {d.weight for d in decisions}:
            why = "not the weight of a known GEMM layer; left as it is"
            if id(p) in done:
                why = "tied to a weight decided above; decided there"
            decisions.append(LayerDecision(full, "Parameter", False, why, full, "not a GEMM here"))
    for d in decisions:
        if not d.sparse:
            log.info("bimask: %s (%s) stays dense: %s", d.name, d.kind, d.reason)
    return decisions


NOT_LINEAR = "not a Linear: physical needs Linear -> elementwise -> Linear"


def _realisations(model, plan, wanted: str, perm_every: int) -> dict[str, tuple[str, str]]:
    """Sparse layer name -> (perm_realisation, note for its decision). ``physical`` goes to
    the Linears whose consumer is known; a ValueError (before any change) when none is."""
    if wanted == "gather":
        return {}
    pairs, reasons = find_pairs(model)
    out, why_not = {}, {}  # reason -> layers
    for d, c, _ in plan:
        if not d.sparse or d.reason:
            continue
        if c.kind == "linear" and d.name in pairs:
            consumer = pairs[d.name].consumer
            note = (
                f"; pi physical: rows reordered with {consumer}'s input columns every "
                f"{perm_every} steps (that layer's masks change: a different method)"
            )
            out[d.name] = ("physical", note)
        else:
            why = reasons.get(d.name, NOT_LINEAR)
            out[d.name] = ("gather", f"; pi gathered, not physical: {why}")
            why_not.setdefault(why, []).append(d.name)
    if out and not any(r == "physical" for r, _ in out.values()):  # (none new: a no-op call)
        why = "; ".join(f"{', '.join(names)}: {w}" for w, names in why_not.items())
        raise ValueError(
            "perm_realisation='physical' fits no sparse layer of this model (it needs a sparse "
            f"Linear -> elementwise -> Linear): {why}; use 'gather'"
        )
    return out


def _apply(model, plan, settings, backend, owner, realise) -> list[LayerDecision]:
    """Make the planned layers sparse and fill in where each decision's GEMMs run."""
    modules = dict(model.named_modules())
    by_attention: dict[str, list[str]] = {}
    layers: dict[str, SparseMixin] = {}
    for d, c, attr in plan:
        if d.reason:  # dense, or sparse from an earlier call
            continue
        if d.sparse and c.kind == "attention":
            by_attention.setdefault(c.name, []).append(attr)
    decisions = []
    for d, c, _ in plan:
        if not d.sparse or d.reason or c.kind == "attention":
            decisions.append(d)
            continue
        gemm_kind = "conv2d" if c.kind == "conv2d" else "linear"
        layer_backend, note = _layer_backend(backend, gemm_kind, [_gemm_shape(c, "weight")])
        if c.kind == "attention_out":
            mha = modules[c.parent]
            attrs = by_attention.pop(c.parent, [])
            shapes = [_gemm_shape(c, "weight")] + [tuple(getattr(mha, a).shape) for a in attrs]
            layer_backend, note = _layer_backend(backend, gemm_kind, shapes)
            make_sparse_attention(
                mha, attrs, True, backend=layer_backend, **settings,
            )  # fmt: skip
            note = f"; run by {c.parent} through F.multi_head_attention_forward, rerouted" + note
        else:
            transposed = c.kind == "transposed_linear"
            how, why = realise.get(d.name, ("gather", ""))
            note += why
            make_sparse(
                c.module, transposed, backend=layer_backend, perm_realisation=how, **settings
            )
        tied = owner[id(c.module.weight)]
        if tied != d.name and tied in layers:  # a tied weight gets one mask: share the owner's
            for b in SPARSE_BUFFERS:
                if b in layers[tied]._buffers:
                    c.module._buffers[b] = layers[tied]._buffers[b]
            note += f"; weight tied with {tied}, shares its masks"
        layers[d.name] = c.module
        where = c.module._ops().describe()
        if c.kind in ("linear", "conv2d") and own_forward(type(c.module)._dense_class):
            where = OWN_FORWARD
        reason = f"{settings['method']} {settings['pattern']}: {where}{note}"
        decisions.append(LayerDecision(d.name, d.kind, True, reason, d.weight, where))
    for name, attrs in by_attention.items():  # attention modules whose out_proj stays dense
        shapes = [tuple(getattr(modules[name], a).shape) for a in attrs]
        attention_backend, _ = _layer_backend(backend, "linear", shapes)
        make_sparse_attention(modules[name], attrs, False, backend=attention_backend, **settings)
    decisions = [_attention_where(model, d) for d in decisions]
    for m in model.modules():
        if isinstance(m, tuple(FUSED_SWITCHES)) and any(
            isinstance(s, SparseMixin) for s in m.modules()
        ):
            disable_fused_encoder(m)
    return decisions


def _gemm_shape(c: Candidate, attr: str) -> tuple[int, int]:
    """(out, K) of a candidate's GEMM weight (a Conv1D stores in x out; a conv flattens K)."""
    shape = tuple(getattr(c.module, attr).shape)
    if c.kind == "transposed_linear":
        shape = shape[::-1]
    k = 1
    for d in shape[1:]:
        k *= d
    return shape[0], k


def _layer_backend(backend: str, gemm_kind: str, shapes) -> tuple[str, str]:
    """(the backend a layer's GEMMs run on, the note its decision gets): ``backend``, or torch
    where it has no such GEMMs or refuses one of the layer's weight shapes."""
    if gemm_kind not in BACKENDS[backend]:
        return "torch", f"; {gemm_kind} GEMMs on torch ({backend} has none)"
    for out, k in shapes:
        if why := shape_refusal(backend, out, k):
            return "torch", f"; GEMMs on torch: {why}"
    return backend, ""


def _attention_where(model, d: LayerDecision) -> LayerDecision:
    if not d.sparse or d.reason:
        return d
    holder = model.get_submodule(f"{d.name}_mask")
    where = holder._ops().describe()
    reason = (
        f"{holder.method} {holder.pattern}: {where}; F.multi_head_attention_forward's projection "
        "rerouted (one GEMM when query is key is value, else row-slice GEMMs on torch)"
    )
    return LayerDecision(d.name, d.kind, True, reason, d.weight, where)
