import pytest

from adapters_kit.evaluation.evaluator import compute_metrics

# y_true/y_pred worked by hand:
#   class a: TP 2, FP 0, FN 1 -> P 1,   R 2/3, F1 0.8
#   class b: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 0.5
#   class c: TP 1, FP 1, FN 0 -> P 1/2, R 1,   F1 2/3
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_metrics_match_hand_computation():
    m = compute_metrics(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_micro"] == pytest.approx(4 / 6)
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_class_absent_from_split_is_listed_but_not_averaged():
    m = compute_metrics(Y_TRUE, Y_PRED, ["a", "b", "c", "never"])
    assert m["per_class"]["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # macro over the classes present
    assert m["confusion_matrix"][3] == [0, 0, 0, 0] and len(m["confusion_matrix"]) == 4


def test_class_never_predicted_scores_zero_precision_without_warning_noise():
    m = compute_metrics([0, 1, 1], [0, 0, 0], ["a", "b"])
    assert m["per_class"]["b"]["precision"] == 0.0 and m["per_class"]["b"]["recall"] == 0.0
    assert m["accuracy"] == pytest.approx(1 / 3)
    # a: P 1/3, R 1, F1 0.5; b: 0
    assert m["f1_macro"] == pytest.approx(0.25)


def test_empty_split_gives_only_count():
    assert compute_metrics([], [], ["a", "b"]) == {"n": 0}
