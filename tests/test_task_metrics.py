"""Multi-label, regression and entity metrics against scikit-learn, scipy and seqeval (random data with fixed seeds
and hand-made cases), edge cases, and independence from the order and batching of the updates."""

import warnings

import numpy as np
import pytest
import seqeval.metrics
import seqeval.scheme
from scipy import stats
from scipy.special import expit
from seqeval.metrics.sequence_labeling import get_entities as seqeval_lenient
from sklearn import metrics as skm

from adapters_kit.evaluation.entities import SCHEMES, EntityMetrics, detect_scheme, get_entities
from adapters_kit.evaluation.multilabel import MultiLabelMetrics, pos_weight, sigmoid, tune_thresholds
from adapters_kit.evaluation.regression import RegressionMetrics, rankdata

TOL = dict(rel=1e-12, abs=1e-12)


def batches(n, seed, splits):
    """A random permutation of range(n), cut into ``splits`` batches of random sizes."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n), splits - 1, replace=False))
    return np.split(rng.permutation(n), cuts)


def fed(metrics, *arrays, seed=0, splits=1):
    for part in batches(len(arrays[0]), seed, splits) if splits > 1 else [np.arange(len(arrays[0]))]:
        metrics.update(*(a[part] for a in arrays))
    return metrics


# ---------------------------------------------------------------------------------------------------- multi-label
def ml_case(n, k, seed, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.05, 0.6, k)).astype(int)
    logits = rng.normal(size=(n, k)) + (2 * y - 1) * rng.uniform(0.2, 2.0, k)
    y[:, 0] = 0  # a label without positives
    y[:, 1] = 1  # and one without negatives
    return (np.round(logits, 1) if ties else logits), y


@pytest.mark.parametrize("ties", [False, True])
def test_multilabel_against_sklearn(ties):
    logits, y = ml_case(400, 6, seed=3, ties=ties)
    thresholds = [0.5, 0.5, 0.3, 0.7, 0.5, 0.45]
    out = fed(MultiLabelMetrics(list("abcdef"), thresholds), logits, y).compute()
    scores = expit(logits)
    pred = (scores >= thresholds).astype(int)
    for avg in ("micro", "macro", "weighted", "samples"):
        assert out[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0), **TOL)
    for avg in ("micro", "macro"):
        precision, recall = skm.precision_score, skm.recall_score
        assert out[f"precision_{avg}"] == pytest.approx(precision(y, pred, average=avg, zero_division=0), **TOL)
        assert out[f"recall_{avg}"] == pytest.approx(recall(y, pred, average=avg, zero_division=0), **TOL)
    assert out["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, pred), **TOL)
    assert out["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred), **TOL)
    aps = [skm.average_precision_score(y[:, j], scores[:, j]) for j in range(6) if y[:, j].any()]
    aucs = [skm.roc_auc_score(y[:, j], scores[:, j]) for j in range(6) if 0 < y[:, j].sum() < len(y)]
    assert len(aps) == 5 and len(aucs) == 4
    assert out["map"] == pytest.approx(np.mean(aps), **TOL)
    assert out["roc_auc"] == pytest.approx(np.mean(aucs), **TOL)
    assert out["label_cardinality_true"] == pytest.approx(y.sum(1).mean(), **TOL)
    assert out["label_cardinality_pred"] == pytest.approx(pred.sum(1).mean(), **TOL)
    f1 = skm.f1_score(y, pred, average=None, zero_division=0)
    for j, row in enumerate(out["per_label"].values()):
        assert row["support"] == y[:, j].sum()
        assert (row["f1"] or 0.0) == pytest.approx(f1[j], **TOL)
        assert (row["recall"] is None) == (y[:, j].sum() == 0)
        assert (row["precision"] is None) == (pred[:, j].sum() == 0)
        if row["average_precision"] is not None:
            assert row["average_precision"] == pytest.approx(skm.average_precision_score(y[:, j], scores[:, j]),
                                                             **TOL)
    assert out["per_label"]["a"]["roc_auc"] is None and out["per_label"]["a"]["average_precision"] is None
    assert out["per_label"]["b"]["roc_auc"] is None and out["per_label"]["b"]["average_precision"] == 1.0


def test_multilabel_order_and_batching_give_identical_results():
    logits, y = ml_case(3000, 5, seed=7)
    whole = fed(MultiLabelMetrics(list("abcde"), [0.4] * 5), logits, y)
    for seed, splits in [(1, 2), (2, 13), (3, 200)]:
        other = fed(MultiLabelMetrics(list("abcde"), [0.4] * 5), logits, y, seed=seed, splits=splits)
        assert other.compute() == whole.compute()
        assert np.array_equal(other.scores(), whole.scores()) and np.array_equal(other.targets(), whole.targets())


def test_multilabel_edge_cases():
    assert MultiLabelMetrics(["a"]).compute() == {"n": 0}
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    out = fed(MultiLabelMetrics(["a", "b"]), np.zeros((4, 2)), y).compute()  # constant scores, all predicted
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:, 0], np.zeros(4)))
    assert out["map"] == pytest.approx(skm.average_precision_score(y[:, 0], np.zeros(4)))
    assert out["f1_samples"] == pytest.approx(skm.f1_score(y, np.ones_like(y), average="samples", zero_division=0))
    assert out["per_label"]["b"]["recall"] is None and out["per_label"]["b"]["roc_auc"] is None
    none_both = fed(MultiLabelMetrics(["a"]), np.full((3, 1), -9.0), np.ones((3, 1))).compute()
    assert none_both["roc_auc"] is None and none_both["f1_macro"] == 0.0
    assert none_both["per_label"]["a"]["precision"] is None
    with pytest.raises(ValueError, match="0/1"):
        MultiLabelMetrics(["a"]).update(np.zeros((2, 1)), np.array([[2], [0]]))
    with pytest.raises(ValueError, match="shape"):
        MultiLabelMetrics(["a", "b"]).update(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="thresholds"):
        MultiLabelMetrics(["a", "b"], thresholds=[0.5])


def test_sigmoid_is_stable():
    x = np.array([-1000.0, -30.0, -1e-3, 0.0, 2.0, 40.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sigmoid(x) == pytest.approx(expit(x), rel=1e-15)


def best_thresholds_by_brute_force(scores, y):
    """Every candidate scored with scikit-learn; the best F1, nearest 0.5, then smallest."""
    out = []
    for j in range(y.shape[1]):
        if not y[:, j].any():
            out.append(0.5)
            continue
        values = np.unique(scores[:, j])
        candidates = np.r_[(values[1:] + values[:-1]) / 2, values[0]]
        f1 = np.array([skm.f1_score(y[:, j], scores[:, j] >= c, zero_division=0) for c in candidates])
        best = candidates[np.isclose(f1, f1.max(), rtol=0, atol=1e-12)]
        out.append(min(best, key=lambda c: (abs(c - 0.5), c)))
    return np.array(out)


def test_tune_thresholds():
    logits, y = ml_case(300, 5, seed=5, ties=True)
    scores = expit(logits)
    tuned = tune_thresholds(scores, y)
    assert tuned == pytest.approx(best_thresholds_by_brute_force(scores, y), abs=1e-15)
    assert tuned[0] == 0.5  # no positives
    assert tuned[1] == scores[:, 1].min()  # only positives: predict every example
    perm = np.random.default_rng(0).permutation(len(y))
    assert np.array_equal(tune_thresholds(scores[perm], y[perm]), tuned)
    tie = np.array([[0.45], [0.6], [0.7], [0.9]])  # F1 2/3 at 0.8 (1 tp) and at 0.45 (2 tp, 2 fp): 0.45 is nearer
    assert tune_thresholds(tie, np.array([[1], [0], [0], [1]])) == pytest.approx([0.45])
    assert best_thresholds_by_brute_force(tie, np.array([[1], [0], [0], [1]])) == pytest.approx([0.45])


def test_pos_weight():
    rng = np.random.default_rng(8)
    y = np.zeros((300, 5), dtype=int)
    y[rng.choice(300, 1, replace=False), 0] = 1  # 299 negatives per positive: clipped to 100
    y[rng.choice(300, 30, replace=False), 2] = 1
    y[rng.choice(300, 200, replace=False), 3] = 1
    y[:, 4] = 1  # no negatives: clipped to 1/100
    positives = y.sum(0)
    expected = [100.0, 1.0, (300 - positives[2]) / positives[2], (300 - positives[3]) / positives[3], 0.01]
    assert pos_weight(y) == pytest.approx(expected, **TOL)
    assert pos_weight(y, max_weight=1e9)[0] == pytest.approx(299.0, **TOL)
    with pytest.raises(ValueError, match="0/1"):
        pos_weight(np.array([[0.5]]))


# ----------------------------------------------------------------------------------------------------- regression
def reg_case(n, t, seed):
    rng = np.random.default_rng(seed)
    true = np.round(rng.normal(size=(n, t)) * 3, 1)  # rounded: ties for the ranks
    return np.round(true + rng.normal(size=(n, t)), 1), true


def test_regression_against_sklearn_and_scipy():
    pred, true = reg_case(500, 1, seed=1)
    out = fed(RegressionMetrics(["y"]), pred[:, 0], true[:, 0]).compute()
    assert "per_target" not in out
    p, t = pred[:, 0], true[:, 0]
    assert out["mse"] == pytest.approx(skm.mean_squared_error(t, p), **TOL)
    assert out["rmse"] == pytest.approx(skm.root_mean_squared_error(t, p), **TOL)
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(t, p), **TOL)
    assert out["r2"] == pytest.approx(skm.r2_score(t, p), **TOL)
    assert out["pearson"] == pytest.approx(stats.pearsonr(p, t).statistic, **TOL)
    assert out["spearman"] == pytest.approx(stats.spearmanr(p, t).statistic, **TOL)


def test_regression_several_targets():
    pred, true = reg_case(300, 3, seed=2)
    out = fed(RegressionMetrics(["a", "b", "c"]), pred, true).compute()
    for key, fn in [("mse", skm.mean_squared_error), ("rmse", skm.root_mean_squared_error),
                    ("mae", skm.mean_absolute_error), ("r2", skm.r2_score)]:
        assert out[key] == pytest.approx(fn(true, pred), **TOL)
        for j, name in enumerate("abc"):
            assert out["per_target"][name][key] == pytest.approx(fn(true[:, j], pred[:, j]), **TOL)
    for key, fn in [("pearson", stats.pearsonr), ("spearman", stats.spearmanr)]:
        per = [fn(pred[:, j], true[:, j]).statistic for j in range(3)]
        assert [out["per_target"][n][key] for n in "abc"] == pytest.approx(per, **TOL)
        assert out[key] == pytest.approx(np.mean(per), **TOL)


def test_regression_order_and_batching_give_identical_results():
    pred, true = reg_case(4000, 2, seed=3)
    pred = pred + np.random.default_rng(0).normal(size=pred.shape) * 1e-3  # long mantissas: sums depend on order
    whole = fed(RegressionMetrics(["a", "b"]), pred, true)
    for seed, splits in [(1, 2), (2, 17), (3, 500)]:
        other = fed(RegressionMetrics(["a", "b"]), pred, true, seed=seed, splits=splits)
        assert other.compute() == whole.compute()
        assert np.array_equal(other.residuals(), whole.residuals())
    one_d = fed(RegressionMetrics(["a"]), pred[:, 0], true[:, 0], seed=4, splits=9).compute()
    assert one_d == fed(RegressionMetrics(["a"]), pred[:, :1], true[:, :1]).compute()


def test_regression_edge_cases():
    assert RegressionMetrics(["y"]).compute() == {"n": 0}
    rng = np.random.default_rng(0)
    x = rng.normal(size=20)
    constant_true = fed(RegressionMetrics(["y"]), x, np.full(20, 2.0)).compute()
    assert constant_true["r2"] is None and constant_true["pearson"] is None and constant_true["spearman"] is None
    assert constant_true["mse"] == pytest.approx(skm.mean_squared_error(np.full(20, 2.0), x), **TOL)
    constant_pred = fed(RegressionMetrics(["y"]), np.full(20, 1.0), x).compute()
    assert constant_pred["pearson"] is None and constant_pred["spearman"] is None
    assert constant_pred["r2"] == pytest.approx(skm.r2_score(x, np.full(20, 1.0)), **TOL)
    assert fed(RegressionMetrics(["y"]), x[:1], x[:1]).compute()["pearson"] is None
    m = fed(RegressionMetrics(["y"]), x, 2 * x)
    assert np.array_equal(np.sort(m.residuals()[:, 0]), np.sort(x))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        RegressionMetrics(["a", "b"]).update(x, x)
    with pytest.raises(ValueError, match="finite"):
        RegressionMetrics(["y"]).update(np.array([np.nan]), np.array([1.0]))


def test_rankdata_matches_scipy():
    x = np.round(np.random.default_rng(1).normal(size=200), 1)
    assert np.array_equal(rankdata(x), stats.rankdata(x, method="average"))


# ------------------------------------------------------------------------------------------------------- entities
SEQEVAL = {"IOB1": seqeval.scheme.IOB1, "IOB2": seqeval.scheme.IOB2, "IOE1": seqeval.scheme.IOE1,
           "IOE2": seqeval.scheme.IOE2, "BIOES": seqeval.scheme.IOBES, "BILOU": seqeval.scheme.BILOU}
HAND_MADE = {
    "IOB2": [["O", "I-PER", "I-PER", "O"], ["B-PER", "I-LOC", "I-LOC"], ["O", "O", "B-LOC"], ["B-PER"],
             ["B-PER", "B-PER", "I-PER"], [], ["O", "O"], ["I-PER"], ["B-PER", "I-PER", "I-LOC", "B-LOC", "I-PER"]],
    "BIOES": [["S-PER"], ["B-PER", "E-PER"], ["B-PER", "I-PER", "E-PER", "O"], ["B-PER", "I-PER", "O"], ["E-PER"],
              ["O", "I-PER", "E-PER"], ["B-PER", "E-LOC"], ["S-PER", "E-PER"], ["S-LOC", "S-LOC"], [], ["O"],
              ["B-PER", "I-LOC", "E-LOC", "S-PER"]],
}


def seqeval_strict(tags, scheme):
    return [(e.tag, e.start, e.end) for e in seqeval.scheme.Tokens(tags, SEQEVAL[scheme]).entities]


def random_sentences(scheme, n, seed, max_len=12):
    prefixes = sorted(set(SCHEMES[scheme]["allowed"]) - {"O"})
    tags = ["O"] * 3 + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC", "MISC")]
    rng = np.random.default_rng(seed)
    return [[str(t) for t in rng.choice(tags, rng.integers(0, max_len))] for _ in range(n)]


@pytest.mark.parametrize("scheme", list(HAND_MADE))
def test_hand_made_entities_match_seqeval(scheme):
    for tags in HAND_MADE[scheme]:
        assert get_entities(tags, scheme) == seqeval_strict(tags, scheme), tags
        lenient = [(t, s, e + 1) for t, s, e in seqeval_lenient(tags)]
        assert get_entities(tags, scheme, mode="lenient") == lenient, tags


def test_hand_made_entity_semantics():
    assert get_entities(["O", "I-PER", "I-PER"], "IOB2") == []  # I- without B-: no entity when strict
    assert get_entities(["O", "I-PER", "I-PER"], "IOB2", mode="lenient") == [("PER", 1, 3)]
    assert get_entities(["B-PER", "I-LOC"], "IOB2") == [("PER", 0, 1)]
    assert get_entities(["B-PER", "I-PER", "O"], "BIOES") == []  # never closed by E-
    assert get_entities(["S-PER", "B-LOC", "E-LOC"], "IOBES") == [("PER", 0, 1), ("LOC", 1, 3)]
    with pytest.raises(ValueError, match="E-PER"):
        get_entities(["E-PER"], "IOB2")
    with pytest.raises(ValueError, match="unknown tagging scheme"):
        get_entities(["O"], "XYZ")


@pytest.mark.parametrize("scheme", list(SEQEVAL))
@pytest.mark.filterwarnings("ignore:.*seems not to be NE tag")  # seqeval's lenient reader does not know L-/U-
def test_random_entities_match_seqeval(scheme):
    for tags in random_sentences(scheme, 300, seed=len(scheme)):
        assert get_entities(tags, scheme) == seqeval_strict(tags, scheme), tags
        assert get_entities(tags, scheme, "lenient") == [(t, s, e + 1) for t, s, e in seqeval_lenient(tags)], tags


def corrupt(sentences, tag_set, seed, rate=0.15):
    rng = np.random.default_rng(seed)
    return [[str(rng.choice(tag_set)) if rng.random() < rate else t for t in s] for s in sentences]


def seqeval_report(true, pred, mode, scheme):
    kw = {"mode": "strict", "scheme": SEQEVAL[scheme]} if mode == "strict" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seqeval.metrics.classification_report(true, pred, output_dict=True, zero_division=0, **kw)


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES", "BILOU", "IOE2"])
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_entity_metrics_match_seqeval(scheme, mode):
    true = random_sentences(scheme, 200, seed=1) + HAND_MADE.get(scheme, [])
    tag_set = sorted({t for s in true for t in s})
    pred = corrupt(true, tag_set, seed=2)
    out = EntityMetrics(tag_set, scheme=scheme, mode=mode)
    out.update(true, pred)
    out = out.compute()
    report = seqeval_report(true, pred, mode, scheme)
    assert out["entity_precision"] == pytest.approx(report["micro avg"]["precision"], **TOL)
    assert out["entity_recall"] == pytest.approx(report["micro avg"]["recall"], **TOL)
    assert out["entity_f1"] == pytest.approx(report["micro avg"]["f1-score"], **TOL)
    assert out["entity_f1_macro"] == pytest.approx(report["macro avg"]["f1-score"], **TOL)
    assert out["token_accuracy"] == pytest.approx(seqeval.metrics.accuracy_score(true, pred), **TOL)
    types = {k for k in report if not k.endswith(" avg")}
    assert types == {"PER", "LOC", "MISC"} and set(out["per_type"]) == types
    for name in types:
        for key in ("precision", "recall", "f1"):
            got = out["per_type"][name][key]
            assert (got or 0.0) == pytest.approx(report[name]["f1-score" if key == "f1" else key], **TOL)
        assert out["per_type"][name]["support"] == report[name]["support"]


def test_entity_metrics_edge_cases_and_order():
    assert EntityMetrics(["O", "B-PER", "I-PER"]).compute() == {"n": 0}
    empty = EntityMetrics(["O", "B-PER", "I-PER"])
    empty.update([[], ["O", "O"]], [[], ["O", "O"]])
    out = empty.compute()
    assert out["n"] == 2 and out["token_accuracy"] == 1.0 and out["entity_f1"] == 0.0
    assert out["entity_f1_macro"] is None and out["per_type"]["PER"]["f1"] is None
    true = random_sentences("BIOES", 300, seed=4) + HAND_MADE["BIOES"]
    pred = corrupt(true, sorted({t for s in true for t in s}), seed=5)
    whole = EntityMetrics(["O", "S-PER", "B-PER", "I-PER", "E-PER"])
    whole.update(true, pred)
    for seed, splits in [(1, 2), (2, 11)]:
        other = EntityMetrics(["O", "S-PER", "B-PER", "I-PER", "E-PER"])
        for part in batches(len(true), seed, splits):
            other.update([true[i] for i in part], [pred[i] for i in part])
        assert other.compute() == whole.compute()
    with pytest.raises(ValueError, match="sentence 0"):
        whole.update([["O"]], [["O", "O"]])


def test_untyped_tags_are_scored_per_tag():
    rng = np.random.default_rng(6)
    tags = ["NOUN", "VERB", "ADJ", "DET", "ADP"]
    true = [[str(t) for t in rng.choice(tags, rng.integers(0, 15))] for _ in range(150)]
    pred = [["NOUN" if t == "ADP" else t for t in s] for s in corrupt(true, tags, seed=7, rate=0.3)]
    m = EntityMetrics(tags + ["PRON"])  # PRON never occurs: listed, left out of the macro average as sklearn does
    assert m.scheme == "none"
    m.update(true, pred)
    out = m.compute()
    flat_true, flat_pred = sum(true, []), sum(pred, [])
    assert out["token_accuracy"] == pytest.approx(skm.accuracy_score(flat_true, flat_pred), **TOL)
    assert out["f1_macro"] == pytest.approx(skm.f1_score(flat_true, flat_pred, average="macro", zero_division=0))
    p, r, f, s = skm.precision_recall_fscore_support(flat_true, flat_pred, labels=tags, zero_division=0)
    assert out["per_tag"]["ADP"]["precision"] is None and out["per_tag"]["ADP"]["recall"] == 0.0  # never predicted
    assert out["per_tag"]["PRON"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    for i, tag in enumerate(tags):
        row = out["per_tag"][tag]
        got = [row["precision"] or 0.0, row["recall"], row["f1"], row["support"]]
        assert got == pytest.approx([p[i], r[i], f[i], s[i]], **TOL)


def test_detect_scheme():
    assert detect_scheme(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) == "IOB2"
    assert detect_scheme(["O", "B-PER", "I-PER", "E-PER", "S-PER"]) == "BIOES"
    assert detect_scheme(["O", "B-PER", "I-PER", "L-PER", "U-PER"]) == "BILOU"
    assert detect_scheme(["O", "I-PER", "E-PER"]) == "IOE2"
    assert detect_scheme(["O", "I-PER", "I-LOC"]) == "IOB1"
    assert detect_scheme(["NOUN", "VERB", "X"]) == "none"
    with pytest.raises(ValueError, match=r"prefix: X$"):
        detect_scheme(["O", "B-X", "I-X", "X"])
    with pytest.raises(ValueError, match="L-PER"):
        detect_scheme(["B-PER", "E-PER", "L-PER"])
