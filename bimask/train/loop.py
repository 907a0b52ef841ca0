"""The training loop: one function, single process or DDP under torchrun."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

from bimask.data import load_dataset
from bimask.machine import describe
from bimask.models import DEFAULT_OPTIMIZER, build_model
from bimask.outputs import atomic_write_text
from bimask.physical import PhysicalPermutations
from bimask.profile import section
from bimask.sparsify import sparsify
from bimask.train import probes
from bimask.train.checkpoint import (
    CheckpointError,
    check_resume_config,
    read_checkpoint,
    restore_rng,
    save_checkpoint,
)
from bimask.train.config import TrainConfig
from bimask.train.distributed import DistInfo, all_reduce_sum, init_distributed, shutdown
from bimask.train.step_profile import StepProfiler, format_summary
from bimask.tuned import BACKENDS as TUNED_BACKENDS
from bimask.tuned import TunedConfigs, check_device, load_tuned

_OPT_DEFAULTS = {"sgd": (0.1, 5e-4), "adamw": (1e-3, 0.05)}
SHOW_LOSS_EVERY = 50  # steps between progress-bar loss updates (each reads the loss: a sync)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use cpu")
    device = torch.device(name)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and device.index is not None and device.index >= count:
        raise ValueError(
            f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to "
            f"cuda:{count - 1}; choose one of them"
        )
    return device


def build_sparse_model(
    cfg: TrainConfig, tuned: TunedConfigs | None = None
) -> tuple[nn.Module, list]:
    """The model of ``cfg``, sparsified; ``tuned``: its tuned configs, already loaded (None:
    read ``cfg.tuned_configs``, if set)."""
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg.model)
    if cfg.method == "dense":
        return model, []
    options = {"candidates": cfg.candidates} if cfg.permutation == "random" else {}
    decisions = sparsify(
        model,
        cfg.pattern,
        cfg.method,
        cfg.permutation,
        cfg.perm_every,
        decay=cfg.decay,
        conv_order=cfg.conv_order,
        backend=cfg.backend,
        perm_realisation=cfg.perm_realisation,
        permutation_options=options,
        seed=cfg.seed,
        tuned=tuned if tuned is not None else cfg.tuned_configs,
    )
    if not any(d.sparse for d in decisions):
        reasons = "; ".join(f"{d.name}: {d.reason}" for d in decisions)
        raise ValueError(f"pattern {cfg.pattern} fits no layer of model {cfg.model} ({reasons})")
    return model, decisions


def tuned_notes(tuned: TunedConfigs | None, backend: str, device: torch.device) -> list[str]:
    """What a run should be told about its tuned configs (never an error): a backend that
    reads none, a file with no entries for this backend, a file tuned on another device."""
    if tuned is None:
        return []
    if backend not in TUNED_BACKENDS:
        return [
            f"backend {backend} reads no tuned configs; --tuned-configs {tuned.where} is unused"
        ]
    if backend not in tuned.backends():
        have = ", ".join(sorted(tuned.backends()))
        return [
            f"--tuned-configs {tuned.where} has no entries for backend {backend} (it has {have}); "
            "this run uses the backend's default configs"
        ]
    note = check_device(tuned, device)
    return [note] if note else []


def _optimizer(cfg: TrainConfig, model: nn.Module, steps: int):
    kind = cfg.optimizer or DEFAULT_OPTIMIZER[cfg.model]
    if kind not in _OPT_DEFAULTS:
        raise ValueError(f"unknown optimizer {kind!r}; choose sgd or adamw")
    lr, wd = cfg.lr, cfg.weight_decay  # None: the optimizer's default; 0 is rejected by cfg
    lr = _OPT_DEFAULTS[kind][0] if lr is None else lr
    wd = _OPT_DEFAULTS[kind][1] if wd is None else wd
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    opt = (
        torch.optim.SGD(groups, lr=lr, momentum=0.9)
        if kind == "sgd"
        else torch.optim.AdamW(groups, lr=lr)
    )
    warm = int(cfg.warmup_epochs * steps / max(cfg.epochs, 1))

    def factor(step: int) -> float:  # per-iteration linear warm-up, then cosine to zero
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(steps - warm, 1)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _load_state(state: dict, model: nn.Module, opt, sched, path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit this model: {err}") from None
    restore_rng(state)


def _subset(split, n):
    return (split.images[:n], split.labels[:n]) if n else (split.images, split.labels)


@torch.no_grad()
def evaluate(model, loader, device, info) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    correct, total = all_reduce_sum([correct, total], info, device)
    return correct / total


def train(cfg: TrainConfig) -> dict:
    """Train one model with one method; returns the summary (also written to out/summary.json)."""
    device = resolve_device(cfg.device)
    if cfg.backend != "torch" and device.type != "cuda":  # kernels, cusparselt, cutlass_sm90
        raise ValueError(
            f"--backend {cfg.backend} runs the sparse kernels on a GPU; this run is on {device}"
        )
    tuned = load_tuned(cfg.tuned_configs)  # checked before anything runs or is written
    info = init_distributed(device)
    if info.is_main:
        for note in tuned_notes(tuned, cfg.backend, device):
            print(f"note: {note}", file=sys.stderr)
    try:
        return fit(cfg, device, info, tuned)[0]
    finally:
        shutdown(info)


def fit(
    cfg: TrainConfig, device: torch.device, info: DistInfo, tuned: TunedConfigs | None = None
) -> tuple[dict, nn.Module]:
    """Train inside an initialised process group (or none); returns (summary, model)."""
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    resume_state = None
    if cfg.resume:  # the whole checkpoint is checked before anything is loaded or touched
        resume_state = read_checkpoint(ckpt_path, device)
        # a checkpoint from before perm_realisation existed was made with the paper's gather
        saved = {"perm_realisation": "gather", **resume_state["config"]}
        check_resume_config(saved, cfg.to_dict(), ckpt_path)
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed)
    cfg.check_sizes(len(data.train.labels), len(data.test.labels), info.world_size)
    train_set = TensorDataset(*_subset(data.train, cfg.train_subset))
    test_set = TensorDataset(*_subset(data.test, cfg.test_subset))
    sampler = DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=cfg.seed)
    train_loader = DataLoader(train_set, cfg.batch_size, sampler=sampler, drop_last=True)
    test_sampler = DistributedSampler(test_set, info.world_size, info.rank, shuffle=False)
    test_loader = DataLoader(test_set, 512, sampler=test_sampler)
    model, decisions = build_sparse_model(cfg, tuned)
    model.to(device)
    net = DistributedDataParallel(model) if info.enabled else model
    opt, sched = _optimizer(cfg, model, cfg.epochs * len(train_loader))
    probe_x, probe_y = (t[:256].to(device) for t in (data.test.images, data.test.labels))
    history, start = [], 0
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if resume_state is not None:
        _load_state(resume_state, model, opt, sched, ckpt_path)
        history, start = resume_state["history"], resume_state["epoch"] + 1
    # physical pi: searched and realised between optimizer steps, never inside a forward
    physical = PhysicalPermutations(model, opt) if cfg.perm_realisation == "physical" else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    profiler = StepProfiler(cfg.profile_steps, device)  # --profile-steps: the first N per epoch
    for epoch in range(start, cfg.epochs):
        if cfg.stop_after is not None and epoch - start >= cfg.stop_after:
            break
        sampler.set_epoch(epoch)
        net.train()
        probes.reset_mask_time(model)
        t0, loss_sum, seen = time.perf_counter(), torch.zeros((), device=device), 0
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not info.is_main,
            file=sys.stderr,
        )
        for i, (x, y) in enumerate(bar):
            with profiler.step(i):
                x, y = x.to(device), y.to(device)
                if physical is not None:  # after the previous optimizer.step(), before this forward
                    physical.realise(step=epoch * len(train_loader) + i)
                loss = loss_fn(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                with section("optimizer"):
                    opt.step()
                sched.step()
            loss_sum += loss.detach() * len(y)  # summed on the device: no host sync per step
            seen += len(y)
            if not bar.disable and i % SHOW_LOSS_EVERY == 0:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}")
        loss_sum = float(loss_sum)
        epoch_time = time.perf_counter() - t0
        mask_s = probes.mask_time(model)
        loss_sum, seen, mask_s = all_reduce_sum([loss_sum, seen, mask_s], info, device)
        top1 = evaluate(net, test_loader, device, info)
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen,
            "test_top1": top1,
            "epoch_time_s": epoch_time,
            "mask_time_s": mask_s / info.world_size,
            "lr": sched.get_last_lr()[0],
            "bwd_kept_frac": probes.backward_kept_fraction(model),
            "grad_gap": probes.gradient_gap(model, probe_x, probe_y),
        }
        if (profiled := profiler.summary()) is not None:  # rank 0's steps under DDP
            record["step_profile_ms"], record["profiled_steps"] = profiled
        history.append(record)
        if info.is_main:
            if profiled is not None:
                print(format_summary(epoch + 1, *profiled), file=sys.stderr, flush=True)
            print(json.dumps(record), flush=True)
            save_checkpoint(
                ckpt_path,
                model=model.state_dict(),
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                epoch=epoch,
                history=history,
                config=cfg.to_dict(),
            )
    return _summary(cfg, history, decisions, device, info, out), model


def _summary(cfg, history, decisions, device, info, out: Path) -> dict:
    train_time = sum(h["epoch_time_s"] for h in history)
    summary = {
        **{
            k: getattr(cfg, k)
            for k in (
                "model",
                "dataset",
                "method",
                "pattern",
                "permutation",
                "perm_every",
                "epochs",
                "seed",
                "batch_size",
                "backend",
                "perm_realisation",
            )
        },
        "final_test_top1": history[-1]["test_top1"] if history else None,
        "best_test_top1": max((h["test_top1"] for h in history), default=None),
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "train_time_s": train_time,
        "mask_overhead_frac": sum(h["mask_time_s"] for h in history) / train_time
        if train_time
        else 0.0,
        "bwd_kept_frac": history[-1]["bwd_kept_frac"] if history else None,
        "grad_gap": history[-1]["grad_gap"] if history else None,
        "device": describe(device),
        "world_size": info.world_size,
        "layers": [d.__dict__ for d in decisions],
        "history": history,
        "config": cfg.to_dict(),
    }
    if info.is_main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
