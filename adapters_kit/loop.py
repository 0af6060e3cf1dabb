"""The accelerate training loop: AdamW + linear warmup/decay, accumulation, clipping, per-epoch validation,
best-epoch selection. The ``Accelerator`` is passed in; this module never creates one."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from adapters_kit.config import TrainConfig
from adapters_kit.evaluation import evaluate


@dataclass
class TrainResult:
    """What training did: per-epoch validation metrics, the best epoch and its score, step log, timing."""

    best_epoch: int
    best_score: float
    best_metrics: dict[str, Any] = field(default_factory=dict)
    """Full validation metrics of the best epoch (the weights the model ends with)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    train_samples: int = 0


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; biases and norm weights (1-d tensors) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, foreach=True)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def train(cfg: TrainConfig, model: torch.nn.Module, train_loader, eval_loader, accelerator,
          names: Sequence[str]) -> TrainResult:
    """Train ``model`` in place and leave it holding the weights of its best validation epoch.

    ``train_loader`` batches are dicts with ``labels`` plus the model's inputs; both loaders are unprepared.
    """
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    # Counted before prepare() (global batches): accelerate steps a prepared scheduler once per process.
    steps = math.ceil(len(train_loader) / cfg.grad_accum_steps) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler)
    result = TrainResult(best_epoch=0, best_score=-math.inf)
    best_state = None
    for epoch in range(1, cfg.epochs + 1):
        seconds, samples = _train_epoch(cfg, model, train_loader, optimizer, scheduler, accelerator, epoch, result)
        result.train_seconds += seconds
        result.train_samples += samples
        metrics = evaluate(model, eval_loader, accelerator, names)
        score = metrics[cfg.best_metric]
        result.history.append({"epoch": epoch, **{k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}})
        accelerator.print(f"epoch {epoch}: validation accuracy {metrics['accuracy']:.4f} "
                          f"{cfg.best_metric} {score:.4f}")
        if score > result.best_score:
            result.best_epoch, result.best_score, result.best_metrics = epoch, score, metrics
            best_state = _trainable_state(accelerator.unwrap_model(model))
    if best_state is not None and result.best_epoch != cfg.epochs:
        accelerator.unwrap_model(model).load_state_dict(best_state, strict=False)
        accelerator.print(f"restored the best epoch ({result.best_epoch}) by validation {cfg.best_metric}")
    accelerator.wait_for_everyone()
    return result


def _train_epoch(cfg, model, loader, optimizer, scheduler, accelerator, epoch, result) -> tuple[float, int]:
    model.train()
    bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=not accelerator.is_local_main_process,
               mininterval=2.0, dynamic_ncols=True)
    start, samples, running = time.perf_counter(), 0, None
    for step, batch in enumerate(bar, 1):
        with accelerator.accumulate(model):
            labels = batch.pop("labels")
            loss = F.cross_entropy(model(**batch), labels)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        samples += len(labels) * accelerator.num_processes
        # .item() syncs; do it only every few steps (and on the last), not per step.
        if step % 10 == 0 or step == len(loader):
            value = loss.item()
            running = value if running is None else 0.9 * running + 0.1 * value
            rate = samples / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{running:.4f}", samples_s=f"{rate:.1f}", refresh=False)
            result.log.append({"epoch": epoch, "step": step, "loss": value, "lr": scheduler.get_last_lr()[0],
                               "samples_per_second": rate})
    bar.close()
    return time.perf_counter() - start, samples
