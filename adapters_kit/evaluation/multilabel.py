"""Streaming multi-label metrics: feed batches of logits and 0/1 targets, read every metric at the end.

Each label is an independent yes/no question: its score is ``sigmoid(logit)`` and it is predicted when the score
reaches the label's threshold (0.5 unless tuned with :func:`tune_thresholds`). The definitions are scikit-learn's
for multilabel indicator input with ``zero_division=0``: macro averages run over *all* labels, ``f1_samples`` averages
per example, ``subset_accuracy`` is ``accuracy_score`` and ``hamming_loss`` is ``hamming_loss``.

The state is the stored score matrix (n x K float64) with its targets (n x K bools): ranking metrics (average
precision, ROC-AUC) need every score. Before any float is computed the rows are sorted canonically, so results are
identical, bit for bit, whatever the order and batching of the updates (one process or eight, any batch size).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.5
MAX_POS_WEIGHT = 100.0
"""``pos_weight`` clips negatives/positives to [1/100, 100]: a rare label should not dominate the BCE loss."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float64, without overflow for large ``|x|``."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _check_pair(scores: np.ndarray, targets: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape or (k is not None and scores.shape[1] != k):
        want = f"(B, {k})" if k is not None else "(B, K)"
        raise ValueError(f"expected scores and targets of the same shape {want}; got {scores.shape} and "
                         f"{targets.shape}")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("multi-label targets must be 0/1 indicators")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return scores, targets.astype(bool)


def _canonical(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted lexicographically by (scores, targets): one order for every order of arrival."""
    keys = [targets[:, j] for j in range(targets.shape[1])[::-1]] + [scores[:, j] for j in
                                                                     range(scores.shape[1])[::-1]]
    order = np.lexsort(keys)  # the last key is the primary one: score of label 0 first
    return scores[order], targets[order]


def _curve(score: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores (descending) with the true and false positives of ``score >= value`` at each."""
    order = np.argsort(-score, kind="stable")
    s, y = score[order], positive[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each run of equal scores
    tps = np.cumsum(y)[last]
    return s[last], tps, (last + 1) - tps


def _ranking(score: np.ndarray, positive: np.ndarray) -> tuple[float | None, float | None]:
    """(average precision, ROC-AUC) of one label; None where undefined (no positives / a single class)."""
    p = int(positive.sum())
    neg = len(positive) - p
    if p == 0:
        return None, None
    _, tps, fps = _curve(score, positive)
    # AP = sum over thresholds of (recall step) x precision, scikit-learn's non-interpolated definition
    ap = float(np.sum(np.diff(tps, prepend=0) * (tps / (tps + fps))) / p)
    if neg == 0:
        return ap, None
    # trapezoids under the ROC curve, summed exactly in integers: one rounding, at the division
    area = int(np.sum(np.diff(fps, prepend=0) * (tps + np.r_[0, tps[:-1]])))
    return ap, area / (2 * p * neg)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


class MultiLabelMetrics:
    """Accumulates multi-label logits/targets batch by batch.

    Args:
        names: One name per label (the K columns).
        thresholds: Per-label decision thresholds on the sigmoid score; 0.5 each when omitted.

    >>> m = MultiLabelMetrics(["a", "b"])
    >>> m.update(np.array([[2.0, -1.0], [-1.0, 1.0]]), np.array([[1, 0], [1, 1]]))
    >>> m.compute()["hamming_loss"]
    0.25
    """

    def __init__(self, names: Sequence[str], thresholds: Sequence[float] | None = None):
        self.names = list(names)
        self.k = len(self.names)
        if thresholds is None:
            thresholds = [DEFAULT_THRESHOLD] * self.k
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.thresholds.shape != (self.k,):
            raise ValueError(f"expected {self.k} thresholds (one per label); got {len(self.thresholds)}")
        self.n = 0
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, logits: np.ndarray, targets: np.ndarray) -> None:
        """Add a batch: ``logits`` (B, K) float, ``targets`` (B, K) 0/1."""
        scores, targets = _check_pair(sigmoid(logits), targets, self.k)
        if len(scores) == 0:
            return
        self.n += len(scores)
        self._scores.append(scores)
        self._targets.append(targets)

    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._scores:
            return np.zeros((0, self.k)), np.zeros((0, self.k), dtype=bool)
        return _canonical(np.concatenate(self._scores), np.concatenate(self._targets))

    def scores(self) -> np.ndarray:
        """The stored sigmoid scores, (n, K), rows in the canonical order."""
        return self._stored()[0]

    def targets(self) -> np.ndarray:
        """The stored targets as bools, (n, K), rows in the same order as :meth:`scores`."""
        return self._stored()[1]

    def compute(self) -> dict[str, Any]:
        """Every metric, as a JSON-ready dict (``{"n": 0}`` before any update)."""
        if self.n == 0:
            return {"n": 0}
        scores, targets = self._stored()
        pred = scores >= self.thresholds
        out: dict[str, Any] = {"n": int(self.n)}
        out.update(_label_metrics(pred, targets))
        ranking = [_ranking(scores[:, j], targets[:, j]) for j in range(self.k)]
        out["map"] = _mean([ap for ap, _ in ranking])
        out["roc_auc"] = _mean([auc for _, auc in ranking])
        out["label_cardinality_true"] = float(targets.sum() / self.n)
        out["label_cardinality_pred"] = float(pred.sum() / self.n)
        out["per_label"] = _per_label(pred, targets, ranking, self.names)
        return out


def _label_metrics(pred: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Threshold metrics of scikit-learn (``zero_division=0``) from the prediction and target indicators."""
    tp = (pred & targets).sum(0)
    predicted, support = pred.sum(0), targets.sum(0)
    precision, recall = _divide(tp, predicted), _divide(tp, support)
    f1 = _divide(2 * tp, predicted + support)
    row_tp = (pred & targets).sum(1)
    row_f1 = _divide(2 * row_tp, pred.sum(1) + targets.sum(1))
    n, k = targets.shape
    return {
        "f1_micro": float(_divide(2 * tp.sum(), predicted.sum() + support.sum())),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float(_divide((f1 * support).sum(), support.sum())),
        "f1_samples": float(row_f1.mean()),
        "precision_micro": float(_divide(tp.sum(), predicted.sum())),
        "recall_micro": float(_divide(tp.sum(), support.sum())),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "subset_accuracy": float((pred == targets).all(1).sum() / n),
        "hamming_loss": float((pred != targets).sum() / (n * k)),
    }


def _per_label(pred: np.ndarray, targets: np.ndarray, ranking: list, names: list[str]) -> dict[str, dict]:
    """Per label precision/recall/F1/support/ROC-AUC/AP; None where the ratio is 0/0."""
    out = {}
    for j, name in enumerate(names):
        tp = int((pred[:, j] & targets[:, j]).sum())
        predicted, support = int(pred[:, j].sum()), int(targets[:, j].sum())
        out[name] = {
            "precision": tp / predicted if predicted else None,
            "recall": tp / support if support else None,
            "f1": 2 * tp / (predicted + support) if predicted + support else None,
            "support": support,
            "roc_auc": ranking[j][1],
            "average_precision": ranking[j][0],
        }
    return out


def _best_threshold(score: np.ndarray, positive: np.ndarray) -> float:
    """The F1-maximising threshold of one label (see :func:`tune_thresholds`)."""
    p = int(positive.sum())
    if p == 0:
        return DEFAULT_THRESHOLD
    values, tps, fps = _curve(score, positive)
    f1 = 2 * tps / (tps + fps + p)  # predicting score >= values[i]
    lower = values[1:]
    mids = values[:-1] + (lower - values[:-1]) / 2  # the midpoint below each distinct score but the lowest
    mids = np.where(mids > lower, mids, values[:-1])  # adjacent floats: keep the same prediction set
    candidates = np.r_[mids, values[-1]]  # and the lowest score itself: predict every example
    best = np.flatnonzero(f1 == f1.max())
    order = np.lexsort((candidates[best], np.abs(candidates[best] - DEFAULT_THRESHOLD)))
    return float(candidates[best[order[0]]])


def tune_thresholds(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per label, the decision threshold that maximises that label's F1 on validation data.

    The candidates for a label are the midpoints between its consecutive distinct scores, and its lowest score
    (which predicts every example, the best choice when positives dominate). Ties go to the candidate closest to
    0.5, then to the smaller one. A label without positives keeps 0.5. The result is deterministic and does not
    depend on the order of the rows.

    Args:
        scores: (n, K) sigmoid scores, e.g. ``MultiLabelMetrics.scores()`` on the validation split.
        targets: (n, K) 0/1 indicators.

    Returns:
        (K,) float64 thresholds, for ``MultiLabelMetrics(names, thresholds=...)``.

    >>> tune_thresholds(np.array([[0.2], [0.3], [0.9]]), np.array([[0], [1], [1]]))
    array([0.25])
    """
    scores, targets = _check_pair(scores, targets)
    return np.array([_best_threshold(scores[:, j], targets[:, j]) for j in range(scores.shape[1])])


def pos_weight(targets: np.ndarray, max_weight: float = MAX_POS_WEIGHT) -> np.ndarray:
    """Per label negatives/positives, the ``pos_weight`` of ``BCEWithLogitsLoss`` that balances rare labels.

    Args:
        targets: (n, K) 0/1 indicators of the training split.
        max_weight: Weights are clipped to ``[1 / max_weight, max_weight]``.

    Returns:
        (K,) float64 weights; 1.0 for a label without positives.

    >>> pos_weight(np.array([[1, 0], [0, 1], [0, 1], [0, 1]]))
    array([3.        , 0.33333333])
    """
    targets = np.asarray(targets)
    if targets.ndim != 2 or not np.isin(targets, (0, 1)).all():
        raise ValueError(f"expected (n, K) 0/1 targets; got shape {targets.shape}")
    positives = targets.sum(0).astype(np.float64)
    negatives = len(targets) - positives
    weight = np.divide(negatives, positives, out=np.ones_like(positives), where=positives > 0)
    return np.clip(weight, 1.0 / max_weight, max_weight)
