"""The measured training step: an MLP block (SparseLinear -> GELU -> SparseLinear) timed whole.

One step is forward + backward (the block's input needs its gradient too, as inside a network) +
an optimizer-free weight update (``w -= lr * grad`` under no_grad). Per block x pattern x method
x permutation realisation x training backend (``bimask.backends.BACKENDS``) the step is timed
with the project's one timing function (suite/timing.py: warm-up, repetitions until the
relative standard error is under the target or the budget ends; CUDA events, perf_counter on
CPUs), every repetition inside a ``bimask.profile`` profile, so each row carries the breakdown:

  masks, compress, gather, gemm_fwd, gemm_dx, gemm_dw, update   per-step sections (medians)
  extra        sections of other names a backend records (their names in ``sections``)
  other        the measured step median minus the per-step parts (GELU, autograd, launches)
  permutation  the permutation search (+ a physical reorder), amortised: measured apart on a
               refresh, divided by ``perm_every``
  mask_refresh what else a refresh step costs (tmask rebuilds its transposable mask), amortised

The timed steps never refresh (the layers run with a huge ``perm_every``), so the amortised
parts are added explicitly: ``step_ms`` = measured median + permutation + mask_refresh, and the
parts with ``other`` add up to it. The refresh is measured once per block, pattern, method and
realisation (the masks do not depend on the backend) and every backend starts from the same
prepared weights and masks. A backend that cannot build or run a combination is a row with its
status (``unsupported``, ``error``) and the reason, never an exception; a combination that the
run's time budget does not reach is ``skipped``.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bimask import SparseLinear
from bimask.methods import get_method
from bimask.profile import profiling, section
from suite.step_shapes import Block
from suite.timing import measure

METHOD_ORDER = ("dense", "bimask", "srste", "tmask")  # dense first: every speed-up needs it
PER_STEP = ("masks", "compress", "gather", "gemm_fwd", "gemm_dx", "gemm_dw", "update")
AMORTISED = ("permutation", "mask_refresh")
PARTS = (*PER_STEP, "extra", *AMORTISED, "other")  # their sum is step_ms
NO_REFRESH = 1 << 40  # perm_every of the timed layers: no refresh lands in a timed step


@dataclass(frozen=True)
class StepSpec:
    """What one ``suite step`` run measures, and how long it may take."""

    blocks: tuple[Block, ...]
    patterns: tuple[str, ...]
    methods: tuple[str, ...]
    backends: tuple[str, ...]
    device: str = "cpu"
    dtype: str = "float32"
    permutation: str = "greedy"
    perm_every: int = 100  # the training setting the refresh is amortised over
    budget_s: float = 1.0  # timing budget of one combination
    time_budget_s: float | None = None  # of the whole run; None: unbounded
    target_rse: float = 0.02
    min_reps: int = 5
    warmup: int = 2
    lr: float = 1e-4
    seed: int = 0


def physical_available() -> str | None:
    """None when the layers offer ``perm_realisation="physical"`` (bimask.physical), else why."""
    try:
        from bimask.physical import PhysicalPermutations  # noqa: F401

        SparseLinear(16, 16, method="bimask", perm_realisation="physical")
    except (ImportError, TypeError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def realisations(method: str) -> tuple[str, ...]:
    """The permutation realisations measured for ``method``: '-' without a permutation;
    'gather' (the backend's own: in-kernel or a separate op) and, where the layers have it,
    'physical' for bimask."""
    if not get_method(method).uses_permutation:
        return ("-",)
    return ("gather", "physical") if physical_available() is None else ("gather",)


def build_block(
    block: Block, method: str, pattern: str, backend: str, realisation: str, spec: StepSpec
) -> nn.Sequential:
    """fc1 -> GELU -> fc2 as SparseLinear layers (fc1 physical when asked: fc2's consumer is
    not known, so fc2 keeps the gather)."""
    torch.manual_seed(spec.seed)
    kw = dict(
        pattern=pattern if pattern != "-" else "2:4",
        method=method,
        permutation=spec.permutation,
        perm_every=NO_REFRESH,
        backend=backend,
        device=spec.device,
        dtype=getattr(torch, spec.dtype),
    )
    first = {**kw, "perm_realisation": "physical"} if realisation == "physical" else kw
    return nn.Sequential(
        SparseLinear(block.d_model, block.d_hidden, **first),
        nn.GELU(),
        SparseLinear(block.d_hidden, block.d_model, **kw),
    )


def _sparse_layers(model: nn.Module) -> list[SparseLinear]:
    return [m for m in model if isinstance(m, SparseLinear) and m._spec.masks is not None]


def _profiled(fn: Callable[[], object], device: str, name: str | None = "masks") -> dict:
    with profiling(device) as prof:
        if name is None:
            fn()
        else:
            with section(name):
                fn()
    return prof.totals_ms()


def prepare(model: nn.Sequential, realisation: str, device: str) -> dict[str, float]:
    """Make the masks ready and measure one refresh (ms, not amortised): the permutation search
    (and a physical reorder) and what else a refresh adds to the masks (tmask's rebuild).

    The refresh measured is each layer's first masks, as at step 0 of training (one
    transposable solve, not two, at full shapes); against the next, warm, masks it also
    counts one forward mask the first refresh computes for its search (noise, amortised)."""
    raw = {"permutation": 0.0, "mask_refresh": 0.0}
    layers = _sparse_layers(model)
    physical = None
    if realisation == "physical":
        from bimask.physical import PhysicalPermutations

        physical = PhysicalPermutations(model)
    for layer in layers:
        if getattr(layer, "perm_realisation", "gather") == "physical":
            layer.compute_masks(refresh=False)  # searched by the physical realisation below
            continue
        ref = _profiled(lambda layer=layer: layer.compute_masks(refresh=True), device)
        base = _profiled(lambda layer=layer: layer.compute_masks(refresh=False), device)
        raw["permutation"] += ref.get("permutation", 0.0)
        raw["mask_refresh"] += max(ref.get("masks", 0.0) - base.get("masks", 0.0), 0.0)
    if physical is not None:
        prof = _profiled(lambda: physical.realise(0), device, name=None)
        raw["permutation"] += sum(v for k, v in prof.items() if k != "masks")
    for layer in layers:
        layer.step.fill_(1)  # the next forward is not a refresh
    return raw


def time_steps(model: nn.Sequential, block: Block, spec: StepSpec, budget_s: float):
    """Warm-up, then timed steps, each in its own profile: (Timing, per-step section totals)."""
    device, dtype = torch.device(spec.device), getattr(torch, spec.dtype)
    g = torch.Generator(device).manual_seed(spec.seed)
    x = torch.randn(block.tokens, block.d_model, device=device, dtype=dtype, generator=g)
    x.requires_grad_(True)
    dy = torch.randn(block.tokens, block.d_model, device=device, dtype=dtype, generator=g)
    params = list(model.parameters())
    profiles = []

    def step() -> None:
        with profiling(device) as prof:
            model(x).backward(dy)
            with section("update"), torch.no_grad():
                for p in params:
                    p.sub_(p.grad, alpha=spec.lr)
                    p.grad = None
            x.grad = None
        profiles.append(prof)

    for _ in range(spec.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timing = measure(
        step,
        device=device,
        target_rse=spec.target_rse,
        budget_s=budget_s,
        min_reps=spec.min_reps,
        warmup=0,
    )
    return timing, [p.totals_ms() for p in profiles[-timing.reps :]]


def breakdown(timing, totals: list[dict], refresh: dict, perm_every: int) -> dict:
    """The row's time columns: per-step part medians, amortised refresh parts, other, step."""
    med = {name: statistics.median(t.get(name, 0.0) for t in totals) for name in PER_STEP}
    names = sorted({n for t in totals for n in t} - set(PER_STEP))
    extra = {n: statistics.median(t.get(n, 0.0) for t in totals) for n in names}
    amortised = {k: refresh.get(k, 0.0) / perm_every for k in AMORTISED}
    other = timing.median_ms - sum(med.values()) - sum(extra.values())
    add = sum(amortised.values())
    cols = {f"{k}_ms": v for k, v in {**med, **amortised}.items()}
    return {
        **cols,
        "extra_ms": sum(extra.values()),
        "other_ms": other,
        "measured_ms": timing.median_ms,
        "step_ms": timing.median_ms + add,
        "iqr_ms": timing.iqr_ms,
        "min_ms": timing.min_ms + add,
        "reps": timing.reps,
        "rse": timing.rse,
        "converged": timing.converged,
        "sections": ";".join(f"{k}={v:.4g}" for k, v in extra.items()),
    }


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:400]


def _describe(model: nn.Module) -> str:
    layers = [m for m in model if isinstance(m, SparseLinear)]
    return " | ".join(f"fc{i + 1}: {m._ops().describe()}" for i, m in enumerate(layers))


def _combos(spec: StepSpec) -> list[tuple[str, str, str]]:
    """(pattern, method, realisation) in the order measured: dense once, then per pattern."""
    methods = [m for m in METHOD_ORDER if m in spec.methods]
    out = [("-", "dense", "-")] if "dense" in methods else []
    for pattern in spec.patterns:
        out += [(pattern, m, r) for m in methods if m != "dense" for r in realisations(m)]
    return out


def _free(device: str) -> None:
    """Give a GPU's memory back between rows (the full shapes are large); a no-op on CPUs,
    where a collection of torch's heap costs more than the step."""
    if device.startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()


def run_step_bench(spec: StepSpec, log: Callable[[str], None] | None = None) -> list[dict]:
    """Every combination of ``spec`` as a row (measured, or with its status and reason)."""
    start = time.perf_counter()
    rows: list[dict] = []
    for block in spec.blocks:
        for pattern, method, realisation in _combos(spec):
            base = {
                "block": block.name,
                "d_model": block.d_model,
                "d_hidden": block.d_hidden,
                "tokens": block.tokens,
                "pattern": pattern,
                "method": method,
                "realisation": realisation,
            }
            template, refresh, why = None, {}, None
            spent = time.perf_counter() - start
            if spec.time_budget_s is not None and spent >= spec.time_budget_s:
                why = ("skipped", f"time budget: {spent:.0f} s of {spec.time_budget_s:g} s spent")
            else:
                try:
                    template = build_block(block, method, pattern, "torch", realisation, spec)
                    refresh = prepare(template, realisation, spec.device)
                except Exception as err:  # a shape the method cannot mask: every backend's row
                    why = ("unsupported", _one_line(err))
            for backend in spec.backends:
                row = {**base, "backend": backend}
                if why is None:
                    row.update(_measure_one(template, refresh, block, row, spec, start))
                else:
                    row.update(status=why[0], reason=why[1])
                rows.append(row)
                if log:
                    log(_progress(row))
            del template
            _free(spec.device)
    return rows


def _measure_one(template, refresh, block, row, spec: StepSpec, start: float) -> dict:
    left = (
        None if spec.time_budget_s is None else spec.time_budget_s - (time.perf_counter() - start)
    )
    if left is not None and left <= 0:
        return {"status": "skipped", "reason": f"time budget: {spec.time_budget_s:g} s spent"}
    try:
        model = build_block(block, row["method"], row["pattern"], row["backend"],
                            row["realisation"], spec)  # fmt: skip
    except Exception as err:  # the backend refuses this layer (device, pattern, dtype)
        return {"status": "unsupported", "reason": _one_line(err)}
    try:
        model.load_state_dict(template.state_dict())
        if row["realisation"] == "physical":
            from bimask.physical import PhysicalPermutations

            PhysicalPermutations(model)  # pi is the identity now: no gather
        budget = spec.budget_s if left is None else max(min(spec.budget_s, left), 0.01)
        timing, totals = time_steps(model, block, spec, budget)
        out = {"status": "ok", "reason": "", "kernels": _describe(model)}
        out.update(breakdown(timing, totals, refresh, spec.perm_every))
        return out
    except Exception as err:  # a backend that cannot run here: a row, never a crash
        return {"status": "error", "reason": _one_line(err)}
    finally:
        del model
        _free(spec.device)


def _progress(row: dict) -> str:
    what = f"{row['block']} {row['method']} {row['pattern']} {row['realisation']} {row['backend']}"
    if row["status"] == "ok":
        return f"{what}: {row['step_ms']:.2f} ms ({row['reps']} reps)"
    return f"{what}: {row['status']} ({row['reason']})"
