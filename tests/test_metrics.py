"""Streaming metrics against scikit-learn on random data, edge cases, and batch-order independence."""

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from adapters_kit.evaluation.metrics import StreamingMetrics, log_softmax


def random_case(n, k, seed, skill=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill  # informative, not perfect
    return logits, y


def feed(logits, y, names, splits=1, seed=0, **kw):
    m = StreamingMetrics(names, **kw)
    order = np.random.default_rng(seed).permutation(len(y)) if splits > 1 else np.arange(len(y))
    cuts = np.sort(np.random.default_rng(seed + 1).choice(np.arange(1, len(y)), splits - 1, replace=False))
    for part in np.split(order, cuts):
        m.update(logits[part], y[part])
    return m


@pytest.mark.parametrize("k", [2, 3, 7])
def test_against_sklearn(k):
    logits, y = random_case(500, k, seed=k)
    names = [f"c{i}" for i in range(k)]
    out = feed(logits, y, names, top_k=2).compute()
    probs = np.exp(log_softmax(logits))
    pred = probs.argmax(1)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    for avg in ("macro", "micro", "weighted"):
        assert out[f"f1_{avg}"] == pytest.approx(f1_score(y, pred, average=avg), abs=1e-12)
    assert out["precision_macro"] == pytest.approx(precision_score(y, pred, average="macro"), abs=1e-12)
    assert out["recall_macro"] == pytest.approx(recall_score(y, pred, average="macro"), abs=1e-12)
    assert out["log_loss"] == pytest.approx(log_loss(y, probs, labels=list(range(k))), abs=1e-8)
    expected_topk = 1.0 if k == 2 else top_k_accuracy_score(y, probs, k=2, labels=list(range(k)))
    assert out["top_k_accuracy"] == pytest.approx(expected_topk, abs=1e-12)
    expected_auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr")
    assert out["roc_auc"] == pytest.approx(expected_auc, abs=1e-12)
    assert out["roc_auc_approximate"] is False


def test_ece_against_direct_computation():
    logits, y = random_case(400, 4, seed=11)
    probs = np.exp(log_softmax(logits))
    conf, pred = probs.max(1), probs.argmax(1)
    bins = np.minimum((conf * 10).astype(int), 9)
    expected = sum(abs((pred[bins == b] == y[bins == b]).sum() - conf[bins == b].sum()) for b in range(10)) / 400
    m = feed(logits, y, list("abcd"), ece_bins=10)
    assert m.compute()["ece"] == pytest.approx(expected, abs=1e-8)
    rel = m.reliability()
    assert sum(rel["count"]) == 400 and len(rel["edges"]) == 11


def test_streaming_equals_one_shot_exactly():
    logits, y = random_case(997, 5, seed=3)
    one = feed(logits, y, list("abcde")).compute()
    for seed in range(3):
        assert feed(logits, y, list("abcde"), splits=13, seed=seed).compute() == one


def test_histogram_auc_is_close_and_flagged():
    logits, y = random_case(3000, 4, seed=5, skill=1.0)
    exact = feed(logits, y, list("abcd")).compute()["roc_auc"]
    approx = feed(logits, y, list("abcd"), splits=7, auc_exact_limit=1000).compute()
    assert approx["roc_auc_approximate"] is True
    assert approx["roc_auc"] == pytest.approx(exact, abs=1e-3)
    both = feed(logits, y, list("abcd"), splits=5, seed=9, auc_exact_limit=1000).compute()
    assert both["roc_auc"] == approx["roc_auc"]  # histograms are order-independent too


def test_single_class_split_has_null_auc_with_warning(caplog):
    logits, _ = random_case(20, 3, seed=1)
    out = feed(logits, np.zeros(20, dtype=int), list("abc")).compute()
    assert out["roc_auc"] is None and "undefined" in caplog.text
    assert out["accuracy"] == pytest.approx((logits.argmax(1) == 0).mean())


def test_absent_class_is_left_out_of_macro_auc(caplog):
    logits, y = random_case(300, 4, seed=2)
    keep = y != 3
    logits, y = logits[keep], y[keep]
    probs = np.exp(log_softmax(logits))
    out = feed(logits, y, list("abcd")).compute()
    expected = np.mean([roc_auc_score(y == c, probs[:, c]) for c in range(3)])
    assert out["roc_auc"] == pytest.approx(expected, abs=1e-12)
    assert "3 of 4 classes" in caplog.text
    assert out["per_class"]["d"]["support"] == 0


def test_class_never_predicted_and_perfect_predictions():
    y = np.array([0, 1, 1, 2])
    logits = np.eye(3)[[0, 0, 0, 2]] * 5
    out = feed(logits, y, list("abc")).compute()
    assert out["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert out["f1_macro"] == pytest.approx(f1_score(y, [0, 0, 0, 2], average="macro", zero_division=0))
    perfect = feed(np.eye(3)[y] * 50, y, list("abc")).compute()
    assert perfect["accuracy"] == 1.0 and perfect["roc_auc"] == 1.0 and perfect["log_loss"] < 1e-15 + 1e-9


def test_empty():
    assert StreamingMetrics(["a", "b"]).compute() == {"n": 0}
