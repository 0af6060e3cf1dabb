"""The accelerate training loop: AdamW + linear warmup/decay, accumulation, clipping, evaluation hooks (each
epoch and/or every N optimizer steps), best-weights selection and early stopping.

The ``Accelerator`` is passed in; this module never creates one.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from adapters_kit.config import LOWER_IS_BETTER, TrainConfig
from adapters_kit.errors import TrainingInterrupted
from adapters_kit.evaluation.evaluator import evaluate
from adapters_kit.memory import TRIM_FIRST_STEPS, release_freed_memory
from adapters_kit.methods.adapters import block_index
from adapters_kit.model.dropout import fast_dropout
from adapters_kit.train.objectives import Objective, TaskLoss
from adapters_kit.train.result import TrainResult
from adapters_kit.train.resume import Checkpointing, Position, check_resumable, load_checkpoint, rotate, save_checkpoint


def layer_depths(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """(parameter name -> depth, depth of the top) for layer-wise learning-rate decay: backbone parameters before
    the first repeated block (embeddings, stem) are depth 0, block i is depth i + 1, and everything after the
    blocks (final norms, the head) is the top, L + 1. CNN stages count as blocks."""
    names = [n for n, _ in model.named_parameters()]
    blocks = {n: b for n in names if n.startswith("backbone.") and (b := block_index(n)) is not None}
    ids = sorted(set(blocks.values()))
    top = len(ids) + 1
    first = next((i for i, n in enumerate(names) if n in blocks), len(names))
    depth = {}
    for i, n in enumerate(names):
        if n in blocks:
            depth[n] = ids.index(blocks[n]) + 1
        else:
            depth[n] = 0 if n.startswith("backbone.") and i < first else top
    return depth, top


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   layer_decay: float | None = None) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; biases and norm weights (1-d tensors) get no weight decay. With
    ``layer_decay`` d, a parameter at depth k (see :func:`layer_depths`) learns at lr * d ** (top - k): the head
    at the full rate, each block below it d times slower than the one above."""
    depth, top = layer_depths(model) if layer_decay else ({}, 0)
    groups: dict[tuple[int, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((top - depth.get(name, top), p.ndim >= 2), []).append(p)
    params = [{"params": ps, "weight_decay": weight_decay if decayed else 0.0,
               "lr": lr * (layer_decay ** steps if layer_decay else 1.0)}
              for (steps, decayed), ps in sorted(groups.items())]
    return torch.optim.AdamW(params, lr=lr, foreach=True)


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


def _shown(value: float | None) -> str:
    """A metric for the progress line; ``None`` (undefined on this split, e.g. a correlation of constant
    predictions) said so rather than printed as nan."""
    return "undefined" if value is None else f"{value:.4f}"


def _evaluate_all(cfg, model, eval_loaders, accelerator, task, selector, result, epoch, step) -> bool:
    stop = False
    for split, loader in eval_loaders.items():
        metrics = evaluate(model, loader, accelerator, task)
        scalars = result.record(epoch, step, split, metrics)
        accelerator.log({f"{split}/{k}": v for k, v in scalars.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=step)
        headline = "" if "accuracy" not in metrics else f"accuracy {metrics['accuracy']:.4f} "
        accelerator.print(f"epoch {epoch} step {step}: {split} {headline}"
                          f"{cfg.best_metric} {_shown(metrics.get(cfg.best_metric))}")
        if split == "validation":
            stop = selector.offer(accelerator.unwrap_model(model), metrics, result, epoch, step)
    return stop


class _SigintFlag:
    """While active, Ctrl-C only raises a flag; the loop saves a checkpoint at the next optimizer step and stops."""

    def __init__(self):
        self.raised, self._old = False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class _Loop:
    """One training run's moving parts; ``run`` is the loop, ``_epoch`` one pass over the training batches."""

    def __init__(self, cfg, model, train_loader, eval_loaders, accelerator, task, checkpoints, objective):
        self.cfg, self.acc, self.task, self.ckpt = cfg, accelerator, task, checkpoints
        self.objective = objective or TaskLoss(task)
        self.optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
        # The schedule is counted in optimizer steps; a prepared scheduler ticks once per process at each step, so
        # both lengths are scaled by the process count. Rounding the warmup in optimizer steps makes 2 processes x
        # batch 4 follow exactly the schedule of 1 process x batch 8.
        procs = accelerator.num_processes
        updates = math.ceil(math.ceil(len(train_loader) / procs) / cfg.grad_accum_steps) * cfg.epochs
        if cfg.max_steps:
            updates = min(updates, cfg.max_steps)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(cfg.warmup_ratio * updates) * procs,
                                                         updates * procs)
        self.generator = getattr(train_loader, "generator", None)
        self.model, self.optimizer, self.loader, self.scheduler = accelerator.prepare(
            model, self.optimizer, train_loader, self.scheduler)
        self.eval_loaders = {s: accelerator.prepare(loader) for s, loader in eval_loaders.items()}
        self.result, self.selector = TrainResult(), _Selector(cfg.best_metric, cfg.early_stopping_patience)
        self.pos = Position()
        self.updates = updates
        self.tokens: torch.Tensor | None = None  # real tokens this process trained on, summed on the device
        self.trims_left = TRIM_FIRST_STEPS  # see adapters_kit.memory
        self._loss_sum: torch.Tensor | None = None  # the epoch's loss, summed on the device (one sync at its end)
        self._batches = 0

    def run(self) -> TrainResult:
        cfg, acc, result = self.cfg, self.acc, self.result
        if self.ckpt is not None and self.ckpt.resume_from is not None:
            self._restore()
        with _SigintFlag() as sigint:
            for epoch in range(self.pos.epoch, cfg.epochs + 1):
                if self.generator is not None:  # epoch e shuffles with seed + e - 1: a resumed epoch repeats its order
                    self.generator.manual_seed(cfg.seed + epoch - 1)
                skip = self.pos.batch if epoch == self.pos.epoch else 0
                self._epoch(epoch, skip, sigint)
                self.pos = Position(epoch + 1, 0, self.pos.step)
                self._save()
                if self.pos.step >= self.updates:  # --max-steps reached
                    break
                if result.stopped_early:
                    acc.print(f"early stopping: no {cfg.best_metric} progress in {cfg.early_stopping_patience} "
                              f"evaluations")
                    break
        if self.selector.state is not None and result.best_step != self.pos.step:
            acc.unwrap_model(self.model).load_state_dict(self.selector.state, strict=False)
            acc.print(f"restored the best weights (epoch {result.best_epoch}, step {result.best_step}) by "
                      f"validation {cfg.best_metric}")
        result.train_tokens = self._tokens_so_far()
        acc.wait_for_everyone()
        return result

    def _epoch(self, epoch: int, skip: int, sigint: _SigintFlag) -> None:
        cfg, acc, model, result = self.cfg, self.acc, self.model, self.result
        model.train()
        total = len(self.loader)
        loader = acc.skip_first_batches(self.loader, skip) if skip else self.loader
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", mininterval=2.0, dynamic_ncols=True,
                   initial=skip, total=total, disable=not acc.is_local_main_process)
        start, samples, evaluated_at, running = time.perf_counter(), 0, -1, None
        if not skip:  # a resumed epoch continues the sum its checkpoint recorded
            self._loss_sum, self._batches = None, 0
        for i, batch in enumerate(bar, skip + 1):
            loss = self._step(batch)
            samples += self._count(batch, loss)
            self.pos = Position(epoch, i, self.pos.step + int(acc.sync_gradients))
            step = self.pos.step
            last = acc.sync_gradients and step >= self.updates  # --max-steps reached, mid-epoch or not
            if i % 10 == 0 or i == total or last:  # .item() syncs: only every few steps, not per step
                running = self._report(bar, loss, running, samples / (time.perf_counter() - start), epoch, i)
            if not acc.sync_gradients:
                continue
            self._trim_early()
            if last:
                break
            if cfg.eval_steps and step % cfg.eval_steps == 0:
                result.train_seconds += time.perf_counter() - start  # evaluation time is not training time
                result.stopped_early = self._evaluate(epoch, step)
                evaluated_at, start, samples = step, time.perf_counter(), 0
                model.train()
                if result.stopped_early:
                    break
            if i < total and (sigint.raised or self._due(step)):
                result.train_seconds += time.perf_counter() - start
                path = self._save()
                start = time.perf_counter()
                if sigint.raised:
                    raise TrainingInterrupted(path)
        result.train_seconds += time.perf_counter() - start
        bar.close()
        if self._loss_sum is not None:
            result.epoch_losses.append(float(acc.reduce(self._loss_sum, "mean")) / self._batches)
        if evaluated_at != self.pos.step:
            result.stopped_early = self._evaluate(epoch, self.pos.step)

    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Forward, backward and (when the accumulation is complete) one optimizer step; returns the loss."""
        acc, model = self.acc, self.model
        with acc.accumulate(model):
            labels = batch.pop("labels", None)  # a pre-stage on unlabelled inputs has none
            loss = self.objective.loss(model, batch, labels, self.pos.step / self.updates)
            acc.backward(loss)
            if acc.sync_gradients and self.cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(model.parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _count(self, batch: dict[str, torch.Tensor], loss: torch.Tensor) -> int:
        """Add the batch to the epoch's loss and the run's sample and token counts (no host sync: summed on the
        device); returns the examples it held over every process."""
        self._loss_sum = loss.detach() if self._loss_sum is None else self._loss_sum + loss.detach()
        self._batches += 1
        size = len(next(iter(batch.values()))) * self.acc.num_processes
        self.result.train_samples += size
        if "input_ids" in batch and "attention_mask" in batch:
            real = batch["attention_mask"].sum()
            self.tokens = real if self.tokens is None else self.tokens + real
        return size

    def _report(self, bar, loss: torch.Tensor, running: float | None, rate: float, epoch: int, batch: int) -> float:
        """Log the step's loss, learning rate and speed (progress bar, step log, trackers); returns the running
        loss the bar shows."""
        value, lr, step = loss.item(), self.scheduler.get_last_lr()[0], self.pos.step
        running = value if running is None else 0.9 * running + 0.1 * value
        bar.set_postfix(loss=f"{running:.4f}", samples_s=f"{rate:.1f}", refresh=False)
        self.result.log.append({"epoch": epoch, "step": batch, "global_step": step, "loss": value, "lr": lr,
                                "samples_per_second": rate})
        self.acc.log({"train/loss": value, "train/lr": lr, "train/samples_per_second": rate}, step=step)
        return running

    def _trim_early(self) -> None:
        """After each of this launch's first ``TRIM_FIRST_STEPS`` optimizer steps, hand the heap's free pages back
        (:mod:`adapters_kit.memory`)."""
        if self.trims_left:
            self.trims_left -= 1
            release_freed_memory()

    def _tokens_so_far(self) -> int | None:
        """Real tokens trained on over every process: before this launch (a resumed run's checkpoint) and in it.
        A collective when this launch counted any: every process calls it."""
        if self.tokens is None:
            return self.result.train_tokens
        return (self.result.train_tokens or 0) + int(self.acc.reduce(self.tokens, "sum"))

    def _evaluate(self, epoch: int, step: int) -> bool:
        return _evaluate_all(self.cfg, self.model, self.eval_loaders, self.acc, self.task, self.selector,
                             self.result, epoch, step)

    def _due(self, step: int) -> bool:
        return self.ckpt is not None and bool(self.ckpt.save_steps) and step % self.ckpt.save_steps == 0

    def _save(self):
        """Write a checkpoint of the current position (the loop calls this at epoch ends and when due)."""
        if self.ckpt is None:
            return None
        r, sel = self.result, self.selector
        self.pos.extra = {"history": r.history, "log": r.log, "train_seconds": r.train_seconds,
                          "train_samples": r.train_samples, "stopped_early": r.stopped_early,
                          "best_score": r.best_score, "best_metrics": r.best_metrics, "best_epoch": r.best_epoch,
                          "best_step": r.best_step, "bad_evaluations": sel.bad,
                          "train_tokens": self._tokens_so_far(),
                          "aux_batches": self.objective.stream.drawn if self.objective.stream else 0,
                          "epoch_losses": r.epoch_losses, "stages": self.ckpt.stages,
                          # the mean over processes: each continues from it, so the epoch's final mean is exact
                          "epoch_loss": [None if self._loss_sum is None else
                                         float(self.acc.reduce(self._loss_sum, "mean")), self._batches]}
        path = save_checkpoint(self.ckpt.output, self.acc, self.model, self.optimizer, self.scheduler, self.pos,
                               sel.state, self.ckpt.config, self.ckpt.stage)
        if self.acc.is_main_process:
            rotate(self.ckpt.output, self.ckpt.keep, r.best_step, self.ckpt.stage)
        return path

    def _restore(self) -> None:
        path = self.ckpt.resume_from
        state = check_resumable(path, self.ckpt.config)
        self.pos, best = load_checkpoint(path, state, self.acc, self.model, self.optimizer, self.scheduler)
        x, r = self.pos.extra, self.result
        r.history, r.log, r.train_seconds, r.train_samples = x["history"], x["log"], x["train_seconds"], \
            x["train_samples"]
        r.stopped_early, r.best_score, r.best_metrics = x["stopped_early"], x["best_score"], x["best_metrics"]
        r.best_epoch, r.best_step, self.selector.bad = x["best_epoch"], x["best_step"], x["bad_evaluations"]
        r.train_tokens, r.epoch_losses = x.get("train_tokens"), x.get("epoch_losses", [])
        total, self._batches = x.get("epoch_loss", [None, 0])
        self._loss_sum = None if total is None else torch.tensor(total, device=self.acc.device)
        self.ckpt.stages.update(x.get("stages", {}))
        self.selector.state = best
        if self.objective.stream is not None:  # DANN's target / the joint source batches continue where they were
            self.objective.stream.restore(x.get("aux_batches", 0))
        self.acc.print(f"resumed from {path} (epoch {self.pos.epoch}, {self.pos.batch} batches done, "
                       f"step {self.pos.step})")


def train(cfg: TrainConfig, model: torch.nn.Module, train_loader, eval_loaders: dict, accelerator,
          task: Any, checkpoints: Checkpointing | None = None,
          objective: Objective | None = None) -> TrainResult:
    """Train ``model`` in place and leave it holding the weights of its best validation evaluation.

    ``eval_loaders`` maps split names to unprepared loaders; ``validation`` drives model selection and early
    stopping. Evaluations run each epoch and, with ``cfg.eval_steps``, every that many optimizer steps. With
    ``checkpoints``, a checkpoint is written at each epoch end and every ``save_steps`` optimizer steps, training
    continues from ``checkpoints.resume_from`` when set, and Ctrl-C saves one and raises
    :class:`TrainingInterrupted`. ``task`` (:mod:`adapters_kit.tasks`) scores the evaluations; ``objective``
    computes each step's loss (default: the task's loss on the batch).
    With ``cfg.fast_dropout`` the model trains with :func:`adapters_kit.model.dropout.fast_dropout`.
    """
    with fast_dropout(model, cfg.fast_dropout):
        return _Loop(cfg, model, train_loader, eval_loaders, accelerator, task, checkpoints, objective).run()
