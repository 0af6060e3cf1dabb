"""A model becomes metrics: ``evaluate(model, loader, accelerator, task)`` streams batches into the task's
streaming metrics (classification: :class:`~adapters_kit.evaluation.metrics.StreamingMetrics`) and times
inference.

Batches are gathered across processes with ``gather_for_metrics``, which drops the samples a distributed sampler
repeats to even out the last batch, so every example counts exactly once.
"""

from __future__ import annotations

import heapq
import logging
import time
from typing import Any, Sequence

import numpy as np
import torch
from accelerate.data_loader import DataLoaderStateMixin

from adapters_kit.evaluation.metrics import StreamingMetrics, counts_metrics
from adapters_kit.memory import release_freed_memory

log = logging.getLogger(__name__)
SPEED_KEYS = ("examples_per_second", "latency_ms_p50", "latency_ms_p95")
"""Timing metrics: measured, so they differ run to run (everything else is deterministic)."""
WARMUP_BATCHES = 2
"""Batches run before latency is timed (allocator and kernel warm-up)."""


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """Label-only metrics (accuracy, F1, precision/recall, per class, confusion matrix) from two label lists.

    >>> m = compute_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    >>> m["accuracy"], round(m["f1_macro"], 4)
    (0.75, 0.7333)
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return {"n": 0}
    k = len(names)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    return {"n": int(len(y_true)), **counts_metrics(cm, names)}


def _same_length(accelerator, outputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token outputs and labels padded to the longest batch of any process (processes' batches differ in
    length), so they can be gathered; padded label positions are -100, which no metric reads."""
    if outputs.dim() < 3 or accelerator.num_processes == 1:
        return outputs, labels
    return accelerator.pad_across_processes(outputs, dim=1), accelerator.pad_across_processes(labels, dim=1,
                                                                                             pad_index=-100)


def _speed(batch_ms: list[float], batch_sizes: list[int]) -> dict[str, float | None]:
    skip = min(WARMUP_BATCHES, max(len(batch_ms) - 1, 0))
    ms, sizes = batch_ms[skip:], batch_sizes[skip:]
    if not ms:
        log.warning("no batches to time; speed metrics are null")
        return {"examples_per_second": None, "latency_ms_p50": None, "latency_ms_p95": None}
    return {"examples_per_second": float(sum(sizes) / (sum(ms) / 1000)),
            "latency_ms_p50": float(np.percentile(ms, 50)), "latency_ms_p95": float(np.percentile(ms, 95))}


class _Mistakes:
    """The ``limit`` most confident wrong predictions seen so far (a bounded heap)."""

    def __init__(self, limit: int):
        self.limit, self.heap = limit, []

    def add(self, probs: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
        pred = probs.argmax(1)
        for i in np.nonzero(pred != labels)[0]:
            item = (float(probs[i, pred[i]]), int(index[i]), int(labels[i]), int(pred[i]))
            if len(self.heap) < self.limit:
                heapq.heappush(self.heap, item)
            elif item > self.heap[0]:
                heapq.heapreplace(self.heap, item)

    def rows(self) -> list[dict[str, Any]]:
        return [{"index": i, "true": t, "predicted": p, "score": s} for s, i, t, p in sorted(self.heap, reverse=True)]


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader, accelerator, task: Any, errors: int = 0) -> dict[str, Any]:
    """Metrics of ``model`` on one split's loader (the metrics ``task.metrics()`` computes), plus inference speed
    of this process.

    A plain ``DataLoader`` is prepared here: ``gather_for_metrics`` trims the distributed sampler's padding by what
    the accelerator's state says about the loader being read, which is only this loader's own when it is prepared
    (an unprepared one would get the remainder of whichever prepared loader was last broken off at its end).

    With ``errors`` > 0 (classification) the batches must carry an ``index`` column; the result then holds
    ``mistakes``: the ``errors`` most confident wrong predictions (dataset index, true id, predicted id, score).
    No side effects beyond switching the model to eval mode (and handing the batches' freed memory back to the OS,
    :mod:`adapters_kit.memory`: evaluation's shapes are not training's).
    """
    model.eval()
    if not isinstance(loader, DataLoaderStateMixin):
        loader = accelerator.prepare_data_loader(loader)
    acc = task.metrics()
    errors = errors if isinstance(acc, StreamingMetrics) else 0
    mistakes = _Mistakes(errors)
    batch_ms, batch_sizes = [], []
    for batch in loader:
        labels = batch.pop("labels")
        index = batch.pop("index", None)
        start = time.perf_counter()
        logits = model(**batch)
        if logits.is_cuda:
            torch.cuda.synchronize()
        batch_ms.append((time.perf_counter() - start) * 1000)
        batch_sizes.append(len(labels))
        logits, labels = _same_length(accelerator, logits.float(), labels)
        gathered = accelerator.gather_for_metrics((logits, labels) + ((index,) if index is not None else ()))
        logits_np, labels_np = gathered[0].cpu().numpy(), gathered[1].cpu().numpy()
        acc.update(logits_np, labels_np)
        if errors and index is not None:
            mistakes.add(torch.from_numpy(logits_np).softmax(-1).numpy(), labels_np, gathered[2].cpu().numpy())
    release_freed_memory()
    out = acc.compute()
    if out["n"] and isinstance(acc, StreamingMetrics):
        out["reliability"] = acc.reliability()
    out.update(_speed(batch_ms, batch_sizes))
    if errors:
        out["mistakes"] = mistakes.rows()
    return out


@torch.inference_mode()
def collect_outputs(model: torch.nn.Module, loader, accelerator) -> tuple[np.ndarray, np.ndarray]:
    """(model outputs, targets) of every example of one split, gathered from all processes (each example once),
    for decisions taken on a whole split (multi-label thresholds tuned on validation)."""
    model.eval()
    if not isinstance(loader, DataLoaderStateMixin):
        loader = accelerator.prepare_data_loader(loader)
    outputs, targets = [], []
    for batch in loader:
        labels = batch.pop("labels")
        batch.pop("index", None)
        gathered = accelerator.gather_for_metrics(_same_length(accelerator, model(**batch).float(), labels))
        outputs.append(gathered[0].cpu().numpy())
        targets.append(gathered[1].cpu().numpy())
    return np.concatenate(outputs), np.concatenate(targets)
