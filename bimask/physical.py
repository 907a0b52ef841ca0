"""The Bi-Mask permutation realised physically: ``perm_realisation="physical"``, a variant.

A Bi-Mask layer's backward N:M groups are M rows of W taken in pi order. Instead of gathering
dY into pi order every step (``"gather"``, the paper's method), the physical realisation
reorders the layer every ``perm_every`` steps: W's rows, its bias, its mask buffers, their
gradients and optimizer state are permuted by pi, and so are the input columns of the Linear
that consumes the layer's output; pi is then the identity and the backward groups are
consecutive rows. A permutation of hidden units through an elementwise op leaves the dense
function exactly as it was, but the consumer's forward N:M groups run along the columns that
moved, so its grouping, and so its masks, change: a different method, whose accuracy cost
``bimask.compare`` measures (method ``bimask-physical``).

It is allowed only where the consumer is known: ``Linear -> elementwise op(s) -> Linear`` in
an ``nn.Sequential`` (its stock forward), or a pair a module declares in a class attribute
``linear_consumers = {"fc1": "fc2"}`` (its forward computes ``fc2(elementwise(fc1(x)))`` and
uses ``fc1``'s output nowhere else; :class:`bimask.models.vit.Block` declares its MLP).

The reordering must happen between optimizer steps, never inside a forward:
:class:`PhysicalPermutations` is built once before training (refusing, with the reason, every
physical layer whose consumer is not known) and ``realise(step)`` is called once per training
step before its forward, i.e. after the previous ``optimizer.step()``. Under DDP pi is
broadcast from rank 0 (``SparseMixin._refresh_permutation``), so every rank reorders alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from bimask.layers import SparseMixin
from bimask.profile import section
from bimask.swap import own_forward

# Modules that act on every feature alone (a permutation of features commutes with them);
# exact types only: a subclass may have a forward of its own.
ELEMENTWISE: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU,
    nn.SELU, nn.CELU, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Tanhshrink,
    nn.Identity, nn.Dropout, nn.AlphaDropout,
)  # fmt: skip


@dataclass(frozen=True)
class Pair:
    """``producer``'s output reaches ``consumer`` (a Linear) through elementwise ops only."""

    producer: str
    consumer: str
    via: str  # what is between them, for messages


def _plain_linear(module: nn.Module) -> bool:
    """A Linear that runs the stock GEMM (sparse or not): its weight is out x in, used once."""
    if not isinstance(module, nn.Linear):
        return False
    return not own_forward(getattr(type(module), "_dense_class", type(module)))


def _sequential_pairs(name: str, seq: nn.Sequential, pairs: dict, reasons: dict) -> None:
    children = list(seq._modules.items())  # every entry, repeats too (named_children drops them)
    for i, (child, module) in enumerate(children):
        if not isinstance(module, nn.Linear):
            continue
        full = f"{name}.{child}" if name else child
        j = i + 1
        while j < len(children) and type(children[j][1]) in ELEMENTWISE:
            j += 1
        via = " -> ".join(type(m).__name__ for _, m in children[i + 1 : j]) or "nothing"
        if j == len(children):
            reasons[full] = (
                f"it is the last GEMM of the nn.Sequential {name or 'model'!r} (through {via}): "
                "what consumes its output is not known"
            )
        elif not _plain_linear(children[j][1]):
            nxt = children[j][1]
            what = "not elementwise" if not isinstance(nxt, nn.Linear) else "its own forward"
            reasons[full] = (
                f"its output goes (through {via}) to {children[j][0]!r} "
                f"({type(nxt).__name__}: {what}), not to a Linear through elementwise ops"
            )
        else:
            consumer = children[j][0]
            pairs[full] = Pair(full, f"{name}.{consumer}" if name else consumer, via)


def _declared_pairs(name: str, module: nn.Module, pairs: dict, reasons: dict) -> None:
    for first, second in dict(getattr(type(module), "linear_consumers", {})).items():
        full = f"{name}.{first}" if name else first
        a, b = getattr(module, first, None), getattr(module, second, None)
        if not (_plain_linear(a) and _plain_linear(b)) or a.out_features != b.in_features:
            reasons[full] = (
                f"{type(module).__name__}.linear_consumers pairs {first!r} with {second!r}, "
                "which are not two plain Linear layers of matching width"
            )
            continue
        pairs[full] = Pair(full, f"{name}.{second}" if name else second,
                           f"{type(module).__name__}.forward (declared elementwise)")  # fmt: skip


def find_pairs(model: nn.Module) -> tuple[dict[str, Pair], dict[str, str]]:
    """Producer name -> :class:`Pair` for every Linear of ``model`` whose consumer is known, and
    for every other Linear why not (both keyed by module name, in module order)."""
    pairs: dict[str, Pair] = {}
    reasons: dict[str, str] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            _sequential_pairs(name, module, pairs, reasons)
        _declared_pairs(name, module, pairs, reasons)
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    modules = dict(model.named_modules(remove_duplicate=False))  # a repeated module too
    for name, pair in list(pairs.items()):
        a, b = modules[name], modules[pair.consumer]
        tied = [p for p in (a.weight, a.bias, b.weight) if p is not None and uses[id(p)] > 1]
        if tied:
            del pairs[name]
            reasons[name] = "its weights are tied with another module: reordering would change it"
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name not in pairs and name not in reasons:
            parent = modules[name.rpartition(".")[0]] if "." in name else model
            reasons[name] = (
                f"it is called from {type(parent).__name__}.forward, whose linear_consumers "
                "do not name it: what consumes its output is not known"
            )
    return pairs, reasons


def _state_tensors(optimizer, param: torch.Tensor) -> list[torch.Tensor]:
    """The optimizer's per-parameter state tensors of ``param`` (shaped like it); a ValueError
    for state that a permutation of the parameter would leave misaligned."""
    state = optimizer.state.get(param, {}) if optimizer is not None else {}
    out = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            continue  # step counters and the like
        if value.shape != param.shape:
            raise ValueError(
                f"{type(optimizer).__name__} keeps {key!r} of shape {tuple(value.shape)} for a "
                f"parameter of shape {tuple(param.shape)}: a physical reordering cannot keep it "
                "aligned; use perm_realisation='gather' with this optimizer"
            )
        out.append(value)
    return out


@torch.no_grad()
def reorder_pair(producer: SparseMixin, consumer: nn.Linear, pi: torch.Tensor, optimizer=None):
    """Permute ``producer``'s rows (weight, bias, masks, grads, optimizer state) and
    ``consumer``'s input columns by ``pi``; producer's pi becomes the identity and its
    ``perm_is_identity`` True; a sparse consumer rebuilds its masks from the new columns."""
    moves = [(producer.weight, 0), (consumer.weight, 1)]
    if producer.bias is not None:
        moves.append((producer.bias, 0))
    tensors = []  # everything is collected (and checked) before the first tensor changes
    for param, dim in moves:
        tensors += [(param, dim)] + [(t, dim) for t in _state_tensors(optimizer, param)]
        if param.grad is not None:
            tensors.append((param.grad, dim))
    for layer, dim in ((producer, 0), (consumer, 1)):
        tensors += [(layer._buffers[b], dim) for b in ("mask_forward", "mask_backward")
                    if b in layer._buffers]  # fmt: skip
    pi = pi.to(producer.weight.device)
    for t, dim in tensors:
        t.copy_(t.index_select(dim, pi))  # in place: the optimizer and DDP keep their tensors
    producer.perm.copy_(torch.arange(len(pi), device=producer.perm.device))
    producer.perm_is_identity = True
    if "masks_ready" in consumer._buffers:  # its N:M groups along the input changed
        consumer.masks_ready.fill_(False)


class PhysicalPermutations:
    """The physically realised Bi-Mask permutations of one model, trained with ``optimizer``.

    Built before training: a ValueError names every layer with ``perm_realisation="physical"``
    whose consumer is not known, and why. Call :meth:`realise` once per training step, before
    its forward (after the previous ``optimizer.step()``)."""

    def __init__(self, model: nn.Module, optimizer=None) -> None:
        pairs, reasons = find_pairs(model)
        modules = dict(model.named_modules(remove_duplicate=False))
        self.optimizer = optimizer
        self.pairs: list[tuple[str, SparseMixin, nn.Linear]] = []
        for name, module in model.named_modules():
            if getattr(module, "perm_realisation", "gather") != "physical":
                continue
            if name not in pairs:
                why = reasons.get(name, "its consumer is not known")
                raise ValueError(
                    f"layer {name!r} has perm_realisation='physical' but {why}; physical needs "
                    "Linear -> elementwise -> Linear (an nn.Sequential, or a module's "
                    "linear_consumers): use 'gather' for this layer"
                )
            self.pairs.append((name, module, modules[pairs[name].consumer]))
        for _, layer, _ in self.pairs:  # one host read before training, never per step
            arange = torch.arange(len(layer.perm), device=layer.perm.device)
            layer.perm_is_identity = bool(torch.equal(layer.perm, arange))

    def realise(self, step: int | None = None) -> list[str]:
        """Search pi and reorder every pair that is due (``step % perm_every == 0``); ``step``
        is the number of optimizer steps taken so far (None: each layer's own step counter,
        read from its device). Returns the producers reordered."""
        done = []
        for name, layer, consumer in self.pairs:
            if (int(layer.step) if step is None else step) % layer.perm_every:
                continue
            t0 = time.perf_counter()
            layer._refresh_permutation(layer.weight.detach())  # pi (broadcast under DDP)
            with section("reorder"):
                reorder_pair(layer, consumer, layer.perm.clone(), self.optimizer)
            layer.mask_time_s += time.perf_counter() - t0
            done.append(name)
        return done


def realise_permutations(model: nn.Module, optimizer=None, step: int | None = None) -> list[str]:
    """One-off :meth:`PhysicalPermutations.realise` (a training loop builds the object once)."""
    return PhysicalPermutations(model, optimizer).realise(step)
