"""The accelerate training loop: AdamW + linear warmup/decay, accumulation, clipping, evaluation hooks (each
epoch and/or every N optimizer steps), best-weights selection and early stopping.

The ``Accelerator`` is passed in; this module never creates one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from adapters_kit.config import LOWER_IS_BETTER, TrainConfig
from adapters_kit.evaluation import evaluate


@dataclass
class TrainResult:
    """What training did: evaluations, the best one (whose weights the model ends with), step log, timing."""

    best_step: int = 0
    best_epoch: int = 0
    best_score: float | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    """Full validation metrics of the best evaluation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per evaluation and split: epoch, global_step, split and the scalar metrics."""
    log: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_samples: int = 0


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; biases and norm weights (1-d tensors) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, foreach=True)


class _Selector:
    """Keeps the best trainable weights by the chosen validation metric; counts evaluations without progress."""

    def __init__(self, metric: str, patience: int | None):
        self.metric, self.patience = metric, patience
        self.sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        self.state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def offer(self, model: torch.nn.Module, metrics: dict, result: TrainResult, epoch: int, step: int) -> bool:
        """Record an evaluation; True when training should stop early."""
        score = metrics.get(self.metric)
        if score is not None and (result.best_score is None or self.sign * score > self.sign * result.best_score):
            result.best_score, result.best_metrics = score, metrics
            result.best_epoch, result.best_step = epoch, step
            self.state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            self.bad = 0
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience


def _evaluate_all(cfg, model, eval_loaders, accelerator, names, selector, result, epoch, step) -> bool:
    stop = False
    for split, loader in eval_loaders.items():
        metrics = evaluate(model, loader, accelerator, names, top_k=cfg.top_k)
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
        result.history.append({"epoch": epoch, "global_step": step, "split": split, **scalars})
        accelerator.print(f"epoch {epoch} step {step}: {split} accuracy {metrics.get('accuracy', float('nan')):.4f} "
                          f"{cfg.best_metric} {metrics.get(cfg.best_metric) or float('nan'):.4f}")
        if split == "validation":
            stop = selector.offer(accelerator.unwrap_model(model), metrics, result, epoch, step)
    return stop


def train(cfg: TrainConfig, model: torch.nn.Module, train_loader, eval_loaders: dict, accelerator,
          names: Sequence[str]) -> TrainResult:
    """Train ``model`` in place and leave it holding the weights of its best validation evaluation.

    ``eval_loaders`` maps split names to unprepared loaders; ``validation`` drives model selection and early
    stopping. Evaluations run each epoch and, with ``cfg.eval_steps``, every that many optimizer steps.
    """
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    # Counted before prepare() (global batches): accelerate steps a prepared scheduler once per process.
    steps = math.ceil(len(train_loader) / cfg.grad_accum_steps) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    eval_loaders = {s: accelerator.prepare(loader) for s, loader in eval_loaders.items()}
    result, selector = TrainResult(), _Selector(cfg.best_metric, cfg.early_stopping_patience)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", mininterval=2.0, dynamic_ncols=True,
                   disable=not accelerator.is_local_main_process)
        start, samples, evaluated_at, running = time.perf_counter(), 0, -1, None
        for i, batch in enumerate(bar, 1):
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
            result.train_samples += len(labels) * accelerator.num_processes
            step += int(accelerator.sync_gradients)
            if i % 10 == 0 or i == len(train_loader):  # .item() syncs: only every few steps, not per step
                value = loss.item()
                running = value if running is None else 0.9 * running + 0.1 * value
                rate = samples / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{running:.4f}", samples_s=f"{rate:.1f}", refresh=False)
                result.log.append({"epoch": epoch, "step": i, "global_step": step, "loss": value,
                                   "lr": scheduler.get_last_lr()[0], "samples_per_second": rate})
            if cfg.eval_steps and accelerator.sync_gradients and step % cfg.eval_steps == 0:
                result.train_seconds += time.perf_counter() - start  # evaluation time is not training time
                result.stopped_early = _evaluate_all(cfg, model, eval_loaders, accelerator, names, selector,
                                                     result, epoch, step)
                evaluated_at, start, samples = step, time.perf_counter(), 0
                model.train()
                if result.stopped_early:
                    break
        result.train_seconds += time.perf_counter() - start
        bar.close()
        if evaluated_at != step:
            result.stopped_early = _evaluate_all(cfg, model, eval_loaders, accelerator, names, selector, result,
                                                 epoch, step)
        if result.stopped_early:
            accelerator.print(f"early stopping: no {cfg.best_metric} progress in {cfg.early_stopping_patience} "
                              f"evaluations")
            break
    if selector.state is not None and result.best_step != step:
        accelerator.unwrap_model(model).load_state_dict(selector.state, strict=False)
        accelerator.print(f"restored the best weights (epoch {result.best_epoch}, step {result.best_step}) by "
                          f"validation {cfg.best_metric}")
    accelerator.wait_for_everyone()
    return result
