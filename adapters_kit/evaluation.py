"""A model becomes metrics: pure metric functions plus ``evaluate(model, loader, accelerator)``.

Metric names are the keys of ``metrics.json``. Macro averages run over the classes present in the split (in the
labels or the predictions), as scikit-learn does by default; ``per_class`` lists every class of the run.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, F1 (macro/micro/weighted), macro precision/recall, per-class scores and the confusion matrix.

    >>> m = compute_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    >>> m["accuracy"], round(m["f1_macro"], 4)
    (0.75, 0.7333)
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    out: dict[str, Any] = {"n": int(len(y_true))}
    if len(y_true) == 0:
        return out
    out["accuracy"] = float(accuracy_score(y_true, y_pred))
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out[f"f1_{avg}"] = float(f)
        if avg == "macro":
            out["precision_macro"], out["recall_macro"] = float(p), float(r)
    ids = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=None, zero_division=0)
    out["per_class"] = {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, n in enumerate(names)}
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    return out


@torch.inference_mode()
def predict(model: torch.nn.Module, loader, accelerator) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) over a prepared loader, gathered across processes.

    ``gather_for_metrics`` drops the samples a distributed sampler repeats to even out the last batch.
    """
    model.eval()
    trues, preds = [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch)
        pred, labels = accelerator.gather_for_metrics((logits.argmax(-1), labels))
        preds.append(pred.cpu())
        trues.append(labels.cpu())
    return torch.cat(trues).numpy(), torch.cat(preds).numpy()


def evaluate(model: torch.nn.Module, loader, accelerator, names: Sequence[str]) -> dict[str, Any]:
    """Metrics of ``model`` on one split's loader. No side effects beyond switching to eval mode."""
    y_true, y_pred = predict(model, loader, accelerator)
    return compute_metrics(y_true, y_pred, names)
