"""Streaming regression metrics: feed batches of predictions and targets, read MSE, RMSE, MAE, R², Pearson and
Spearman at the end.

The definitions are scikit-learn's (``mean_squared_error``, ``mean_absolute_error``, ``r2_score``) and scipy's
(``pearsonr``, ``spearmanr`` with average ranks for ties). Where scipy answers NaN (a constant side) the value is
None, and R² is None when the targets are constant (scikit-learn would report 0 or 1 by convention).

The state is the stored (prediction, target) pairs, n x T float64 each: correlations need them all, and they back
residual plots. Before any float is computed each target's pairs are sorted canonically, so results are identical,
bit for bit, whatever the order and batching of the updates.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

METRICS = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
"""The per-target metrics; with several targets the top level holds their mean over targets."""


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their average rank (scipy's ``rankdata(method="average")``)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]  # each run of equal values starts here
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2)[np.cumsum(first) - 1]  # mean of the ranks start+1 .. end
    return ranks


def _constant(x: np.ndarray) -> bool:
    return bool((x == x[0]).all())


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r as scipy computes it; None when either side is constant (or has fewer than 2 values)."""
    if len(x) < 2 or _constant(x) or _constant(y):
        return None
    xm, ym = x - x.mean(), y - y.mean()
    r = float(np.dot(xm / np.linalg.norm(xm), ym / np.linalg.norm(ym)))
    return max(-1.0, min(1.0, r))  # rounding can step just outside [-1, 1]


def _target_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float | None]:
    """The metrics of one target column, from its pairs in canonical order."""
    err = true - pred
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    constant = _constant(true)
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.mean(np.abs(err))),
        "r2": None if constant or ss_tot == 0 else 1.0 - float(np.sum(err**2)) / ss_tot,
        "pearson": pearson(pred, true),
        "spearman": None if constant or _constant(pred) else pearson(rankdata(pred), rankdata(true)),
    }


class RegressionMetrics:
    """Accumulates regression predictions/targets batch by batch.

    Args:
        names: The target columns (usually one); predictions and targets have one column each.

    >>> m = RegressionMetrics(["score"])
    >>> m.update(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]))
    >>> m.compute()["mae"]
    0.6666666666666666
    """

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.t = len(self.names)
        if self.t == 0:
            raise ValueError("RegressionMetrics needs at least one target name")
        self.n = 0
        self._pred: list[np.ndarray] = []
        self._true: list[np.ndarray] = []

    def _as_columns(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1 and self.t == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != self.t:
            raise ValueError(f"expected shape (B, {self.t})" + (" or (B,)" if self.t == 1 else "") +
                             f"; got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("regression predictions and targets must be finite")
        return values

    def update(self, predictions: np.ndarray, targets: np.ndarray) -> None:
        """Add a batch: ``predictions`` and ``targets`` of shape (B, T), or (B,) for a single target."""
        pred, true = self._as_columns(predictions), self._as_columns(targets)
        if pred.shape != true.shape:
            raise ValueError(f"predictions {pred.shape} and targets {true.shape} differ in shape")
        if len(pred) == 0:
            return
        self.n += len(pred)
        self._pred.append(pred)
        self._true.append(true)

    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._pred:
            return np.zeros((0, self.t)), np.zeros((0, self.t))
        pred, true = np.concatenate(self._pred), np.concatenate(self._true)
        keys = [pred[:, j] for j in range(self.t)[::-1]] + [true[:, j] for j in range(self.t)[::-1]]
        order = np.lexsort(keys)  # by target 0 first, then the other targets, then the predictions
        return pred[order], true[order]

    def predictions(self) -> np.ndarray:
        """The stored predictions, (n, T), rows in the canonical order."""
        return self._stored()[0]

    def targets(self) -> np.ndarray:
        """The stored targets, (n, T), rows in the same order as :meth:`predictions`."""
        return self._stored()[1]

    def residuals(self) -> np.ndarray:
        """``targets - predictions``, (n, T), rows in the same order as :meth:`predictions` (for residual plots)."""
        pred, true = self._stored()
        return true - pred

    def compute(self) -> dict[str, Any]:
        """Every metric, as a JSON-ready dict (``{"n": 0}`` before any update); ``per_target`` when T > 1."""
        if self.n == 0:
            return {"n": 0}
        pred, true = np.concatenate(self._pred), np.concatenate(self._true)
        per_target = {}
        for j, name in enumerate(self.names):
            order = np.lexsort((pred[:, j], true[:, j]))  # each column's pairs in one canonical order
            per_target[name] = _target_metrics(pred[order, j], true[order, j])
        out: dict[str, Any] = {"n": int(self.n)}
        for key in METRICS:
            values = [m[key] for m in per_target.values() if m[key] is not None]
            out[key] = float(np.mean(values)) if values else None
        if self.t > 1:
            out["per_target"] = per_target
        return out
