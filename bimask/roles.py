"""Which modules of a model hold GEMM weights, and which of them play a role kept dense.

The paper keeps the first convolution and the output classifier dense. Both are found by role:
the output layer is the GEMM module whose output *is* the model's output (a forward trace on
``example_input``), the module named by ``output=``, or, without either, the model's last
submodule when that is a GEMM layer; the first convolution is the first one to run (trace) or
the first one registered. A traced GEMM layer whose forward never ran stays dense too: its
weight is read some other way (``F.linear(x, layer.weight)``), which would bypass the masks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

# kind -> does this module hold a GEMM weight of that kind (first match wins)
KINDS: dict[str, Callable[[nn.Module], bool]] = {
    "attention": lambda m: isinstance(m, nn.MultiheadAttention),
    "linear": lambda m: isinstance(m, nn.Linear),
    "conv2d": lambda m: isinstance(m, nn.Conv2d),
    "conv": lambda m: isinstance(m, nn.modules.conv._ConvNd),  # Conv1d/3d, transposed convs
    "transposed_linear": lambda m: is_transposed_linear(m),
    "embedding": lambda m: isinstance(m, (nn.Embedding, nn.EmbeddingBag)),
}
GEMM_KINDS = ("linear", "conv2d")  # what the output / first-conv roles look at

Selector = str | Iterable[str] | Callable[[str, nn.Module], bool] | None


def is_transposed_linear(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2 style: ``y = x @ W + b``, ``W`` of shape in x out),
    recognised by its shape attributes, without importing the library."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and getattr(module, "nf", None) == weight.shape[1]
    )


@dataclass(frozen=True)
class Candidate:
    """A module holding GEMM weights; ``parent`` names the module that runs it (out_proj)."""

    name: str
    module: nn.Module
    kind: str
    parent: str = ""


def find_candidates(model: nn.Module) -> list[Candidate]:
    """Every module of ``model`` that holds a weight matrix of a known kind, in module order."""
    found, inside_attention = [], {}
    for name, module in model.named_modules():
        kind = next((k for k, match in KINDS.items() if match(module)), None)
        if kind is None:
            continue
        if name in inside_attention:
            kind = "attention_out"
        found.append(Candidate(name, module, kind, inside_attention.get(name, "")))
        if kind == "attention":
            inside_attention[f"{name}.out_proj" if name else "out_proj"] = name
    return found


def matches(selector: Selector, name: str, module: nn.Module) -> bool:
    """``selector``: an fnmatch pattern, several, or a predicate ``(name, module) -> bool``."""
    if selector is None:
        return False
    if callable(selector):
        return bool(selector(name, module))
    patterns = [selector] if isinstance(selector, str) else list(selector)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _outputs(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    elif hasattr(value, "__dataclass_fields__"):
        value = [getattr(value, f) for f in value.__dataclass_fields__]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _outputs(v)]
    return []


@torch.no_grad()
def trace(model: nn.Module, example_input, names: dict[nn.Module, str]) -> tuple[list, set]:
    """Run ``model`` once in eval mode (nothing learns, dropout off, BN stats unchanged) and
    return the GEMM modules in the order they ran, and those whose output is the model's."""
    ran, produced, hooks = [], {}, []

    def hook(module, args, output):
        ran.append(names[module])
        for t in _outputs(output):
            produced[id(t)] = names[module]

    modes = {m: m.training for m in model.modules()}
    for module in names:
        hooks.append(module.register_forward_hook(hook))
    try:
        model.eval()
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        result = model(*args)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return ran, {produced[id(t)] for t in _outputs(result) if id(t) in produced}


def dense_roles(
    model: nn.Module,
    candidates: list[Candidate],
    roles: Iterable[str] = ("first_conv", "output"),
    output: str | None = None,
    example_input=None,
) -> dict[str, str]:
    """Module name -> why its role keeps it dense (``roles``: ``first_conv``, ``output``)."""
    roles = set(roles)
    if unknown := roles - {"first_conv", "output"}:
        raise ValueError(f"unknown dense role(s) {sorted(unknown)}; use 'first_conv', 'output'")
    gemm = {c.module: c.name for c in candidates if c.kind in GEMM_KINDS}
    kind = {c.name: c.kind for c in candidates}
    if example_input is not None:
        ran, produce_output = trace(model, example_input, gemm)
        how = "produces the model's output (traced)"
    else:
        ran = [c.name for c in candidates if c.kind in GEMM_KINDS]
        last = list(model.named_modules())[-1][0]
        produce_output = {last} if last in kind and kind[last] in GEMM_KINDS else set()
        how = "the model's last submodule; pass output= or example_input= to choose"
    if output is not None:
        produce_output, how = {output}, "named by output="
    dense = {}
    if example_input is not None:  # a layer whose forward never ran would never see its mask
        for name in (n for n in gemm.values() if n not in ran):
            dense[name] = "did not run in the traced forward (its weight read directly?)"
    if "first_conv" in roles:
        first = next((n for n in ran if kind.get(n) == "conv2d"), None)
        if first is not None:
            dense[first] = "kept dense by default (first convolution, as in the paper)"
    if "output" in roles:
        for name in produce_output:
            dense[name] = f"kept dense by default (output layer: {how}; as in the paper)"
    return dense
