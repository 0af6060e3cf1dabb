"""Streaming classification metrics: feed batches of logits and labels, read every metric at the end.

State is bounded whatever the split size: a K x K confusion matrix, top-k hit counts, fixed-point sums for log-loss
and calibration, and for ROC-AUC either the exact scores (while they fit in ``auc_exact_limit`` values) or, beyond
that, per-class histograms of the score's logit.

Sums are kept as integers in fixed point (2**-32 resolution per example), so the result does not depend on the
order batches arrive in: one process or eight, any batch size, give identical numbers.

Metric names are the keys of ``metrics.json``. Macro averages run over the classes present in the split (in the
labels or the predictions), as scikit-learn does by default; ``per_class`` lists every class of the run.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

FIXED = 2**32
"""Fixed-point scale of the order-independent sums."""
LOG_EPS = math.log(np.finfo(np.float64).eps)
"""Probabilities are clipped at float64 eps for log-loss, as scikit-learn does."""
AUC_BINS = 4096
AUC_LOGIT_RANGE = 40.0
"""Approximate AUC histograms the logit log(p / (1 - p)) over [-40, 40] in 4096 bins (width 0.0195)."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64, copy=False)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _fixed(values: np.ndarray) -> int:
    return int(np.rint(values * FIXED).astype(np.int64).sum())


def _logit(logp: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) computed from log p without cancellation."""
    with np.errstate(divide="ignore"):
        return logp - np.log(-np.expm1(np.minimum(logp, -1e-300)))


class StreamingMetrics:
    """Accumulates logits/labels batch by batch.

    >>> m = StreamingMetrics(["a", "b"])
    >>> m.update(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0, 1, 1]))
    >>> round(m.compute()["accuracy"], 4)
    0.6667
    """

    def __init__(self, names: Sequence[str], top_k: int = 5, ece_bins: int = 15, auc_exact_limit: int = 10_000_000):
        self.names = list(names)
        self.k = len(self.names)
        self.top_k = max(1, min(top_k, self.k))
        self.ece_bins = ece_bins
        self.auc_exact_limit = auc_exact_limit
        self.n = 0
        self.confusion = np.zeros((self.k, self.k), dtype=np.int64)
        self.top_k_hits = 0
        self.nll = 0  # fixed point
        self.ece_count = np.zeros(ece_bins, dtype=np.int64)
        self.ece_conf = [0] * ece_bins  # fixed point
        self.ece_correct = np.zeros(ece_bins, dtype=np.int64)
        self._scores: list[np.ndarray] | None = []  # exact AUC: per-batch score rows, until the limit
        self._labels: list[np.ndarray] = []
        self._hist: np.ndarray | None = None  # approximate AUC: (k, 2 [neg, pos], bins)

    @property
    def auc_approximate(self) -> bool:
        return self._hist is not None

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        """Add a batch: ``logits`` (B, K) float, ``labels`` (B,) int in [0, K)."""
        logits, labels = np.asarray(logits), np.asarray(labels, dtype=np.int64)
        if len(labels) == 0:
            return
        logp = log_softmax(logits)
        pred = logp.argmax(1)
        rows = np.arange(len(labels))
        self.n += len(labels)
        self.confusion += np.bincount(labels * self.k + pred, minlength=self.k * self.k).reshape(self.k, self.k)
        if self.top_k < self.k:
            top = np.argpartition(-logp, self.top_k - 1, axis=1)[:, : self.top_k]
            self.top_k_hits += int((top == labels[:, None]).any(1).sum())
        else:
            self.top_k_hits += len(labels)
        self.nll += _fixed(-np.maximum(logp[rows, labels], LOG_EPS))
        conf = np.exp(logp[rows, pred])
        bins = np.minimum((conf * self.ece_bins).astype(np.int64), self.ece_bins - 1)
        self.ece_count += np.bincount(bins, minlength=self.ece_bins)
        self.ece_correct += np.bincount(bins, weights=(pred == labels), minlength=self.ece_bins).astype(np.int64)
        for b in np.unique(bins):
            self.ece_conf[b] += _fixed(conf[bins == b])
        self._update_auc(logp, labels)

    def _update_auc(self, logp: np.ndarray, labels: np.ndarray) -> None:
        scores = logp[:, 1:] if self.k == 2 else logp  # binary AUC ranks by the positive class only
        if self._hist is not None:
            self._add_to_histograms(scores, labels)
            return
        self._scores.append(scores)
        self._labels.append(labels)
        if self.n * scores.shape[1] > self.auc_exact_limit:
            log.info("ROC-AUC switches to histograms after %d examples (bounded memory)", self.n)
            stored, self._scores, self._labels = list(zip(self._scores, self._labels)), None, []
            self._hist = np.zeros((scores.shape[1], 2, AUC_BINS), dtype=np.int64)
            while stored:  # batch by batch, releasing each, so the switch needs no extra copy of the buffer
                self._add_to_histograms(*stored.pop())

    def _add_to_histograms(self, scores: np.ndarray, labels: np.ndarray) -> None:
        width = 2 * AUC_LOGIT_RANGE / AUC_BINS
        idx = np.clip(((_logit(scores) + AUC_LOGIT_RANGE) / width).astype(np.int64), 0, AUC_BINS - 1)
        cols = scores.shape[1]
        classes = np.arange(cols) + (1 if self.k == 2 else 0)
        positive = (labels[:, None] == classes[None, :]).astype(np.int64)
        flat = (np.arange(cols)[None, :] * 2 + positive) * AUC_BINS + idx
        self._hist += np.bincount(flat.ravel(), minlength=cols * 2 * AUC_BINS).reshape(cols, 2, AUC_BINS)

    # ------------------------------------------------------------------------------------------ results
    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": int(self.n)}
        if self.n == 0:
            return out
        out.update(counts_metrics(self.confusion, self.names))
        out["top_k"] = self.top_k
        out["top_k_accuracy"] = self.top_k_hits / self.n
        out["log_loss"] = self.nll / FIXED / self.n
        out["ece"] = self._ece()
        out["roc_auc"] = self._auc()
        out["roc_auc_approximate"] = self.auc_approximate
        return out

    def reliability(self) -> dict[str, list]:
        """Per confidence bin: count, mean confidence, accuracy (None for empty bins)."""
        conf = [c / FIXED / n if n else None for c, n in zip(self.ece_conf, self.ece_count)]
        acc = [int(c) / int(n) if n else None for c, n in zip(self.ece_correct, self.ece_count)]
        return {"count": self.ece_count.tolist(), "confidence": conf, "accuracy": acc,
                "edges": np.linspace(0, 1, self.ece_bins + 1).tolist()}

    def _ece(self) -> float:
        total = 0.0
        for conf_sum, count, correct in zip(self.ece_conf, self.ece_count, self.ece_correct):
            if count:
                total += abs(int(correct) - conf_sum / FIXED)
        return total / self.n

    def _auc(self) -> float | None:
        present = self.confusion.sum(1) > 0
        if present.sum() < 2:
            log.warning("ROC-AUC is undefined on a split with a single class; reported as null")
            return None
        if self._hist is not None:
            per_class = [_hist_auc(h[1], h[0]) for h in self._hist]
        else:
            per_class = self._exact_auc()
        columns = [1] if self.k == 2 else range(self.k)
        values = [a for a, c in zip(per_class, columns) if present[c] and a is not None]
        if self.k > 2 and len(values) < self.k:
            log.warning("ROC-AUC averages the %d of %d classes present in the split", len(values), self.k)
        return float(np.mean(values)) if values else None

    def _exact_auc(self) -> list[float | None]:
        from sklearn.metrics import roc_auc_score

        scores, labels = np.concatenate(self._scores), np.concatenate(self._labels)
        classes = [1] if self.k == 2 else range(self.k)
        out = []
        for j, c in enumerate(classes):
            y = labels == c
            out.append(float(roc_auc_score(y, scores[:, j])) if 0 < y.sum() < len(y) else None)
        return out


def _hist_auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """AUC from score histograms; pairs in the same bin count one half (the approximation)."""
    p, n = int(pos.sum()), int(neg.sum())
    if p == 0 or n == 0:
        return None
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (p * n))


def counts_metrics(confusion: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, P/R/F1 (macro over present classes, micro, weighted), per class, from a confusion matrix."""
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1).astype(np.float64), cm.sum(0).astype(np.float64)
    n = support.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    accuracy = tp.sum() / n
    return {
        "accuracy": float(accuracy),
        "f1_macro": float(f1[present].mean()),
        "f1_micro": float(accuracy),  # single-label: micro P = micro R = micro F1 = accuracy
        "f1_weighted": float((f1 * support).sum() / n),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(names)},
        "confusion_matrix": cm.tolist(),
    }


def evaluate_module(name: str) -> str:
    """Folder of one of the package's offline ``evaluate`` modules (``classification``, ``accuracy``, ``f1``),
    for ``evaluate.load(evaluate_module("classification"))``."""
    import os

    path = os.path.join(os.path.dirname(__file__), "evaluate_modules", name)
    if not os.path.isfile(os.path.join(path, f"{name}.py")):
        from adapters_kit.errors import UserError

        names = sorted(os.listdir(os.path.join(os.path.dirname(__file__), "evaluate_modules")))
        raise UserError(f"unknown evaluate module {name!r}; choose one of: {', '.join(names)}")
    return path
