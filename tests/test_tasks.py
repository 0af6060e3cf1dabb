"""Task types end to end on the tiny model: detection, multi-label, regression and sentence pairs through train,
the run folder, reload and predict, with metrics checked against scikit-learn / scipy on the reloaded model's own
predictions, and the bad inputs of each task as one line."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, hamming_loss, mean_absolute_error, mean_squared_error, r2_score

from adapters_kit import TrainConfig, load
from adapters_kit.cli import main
from adapters_kit.evaluation.multilabel import tune_thresholds
from adapters_kit.tasks import LabelMap, detect_task, get_task
from tests.cli_cases import assert_one_line_error
from tests.conftest import FILLER, TOPICS, write_csv

NAMES = sorted(TOPICS)


def ml_rows(n: int, seed: int) -> list[dict]:
    """Texts mixing the words of one or two topics (or only filler: no label); the labels are those topics."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topics = [] if i % 10 == 0 else rng.sample(NAMES, rng.choice([1, 1, 2]))
        words = [w for t in topics for w in rng.choices(TOPICS[t], k=4)] + rng.choices(FILLER, k=4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": topics})
    return rows


def reg_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """The score is the share of sport words (plus noise): a number a bag of words predicts."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(0, 6)
        words = rng.choices(TOPICS["sport"], k=k) + rng.choices(TOPICS["tech"], k=6 - k) + rng.choices(FILLER, k=2)
        rng.shuffle(words)
        rows.append((" ".join(words), f"{k / 6 * 4 - 2 + rng.uniform(-0.1, 0.1):.3f}"))
    return rows


def jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def train(model, data, out, *extra) -> dict:
    argv = ["train", "--model", model, "--data", data, "--output", str(out), "--method", "probe", "--epochs", "20",
            "--batch-size", "16", *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


# ----------------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("values, expected", [
    ([["a"], ["a", "b"], []], "multi-label"),
    ([f"{x / 7:.3f}" for x in range(30)], "regression"),
    ([str(x) for x in range(30)], "classification"),  # integer codes stay classes
    ([0.5, 1.5] * 15, "classification"),  # two distinct values: classes, whatever their type
    (["sport", "tech"], "classification"),
])
def test_the_task_is_detected_from_the_label_column(values, expected):
    assert detect_task(values) == expected


# ----------------------------------------------------------------------------------------------- losses
def test_regression_loss_is_mse_on_the_standardised_target():
    task = get_task("regression", LabelMap(("y",), {"mean": [3.0], "std": [2.0]}))
    out, y = torch.tensor([[0.5], [-1.0]]), torch.tensor([4.0, 0.0])
    assert task.loss(out, y).item() == pytest.approx(((0.5 - 0.5) ** 2 + (-1.0 + 1.5) ** 2) / 2)
    huber = get_task("regression", task.labels, TrainConfig(loss="huber"))
    assert huber.loss(torch.tensor([[3.0]]), torch.tensor([3.0])).item() == pytest.approx(3.0 - 0.5)


def test_multilabel_loss_is_bce_with_the_positive_weights_when_asked():
    labels = LabelMap(("a", "b"), {"pos_weight": [3.0, 0.5]})
    out, y = torch.tensor([[0.2, -1.0]]), torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(out)[0]
    plain = -(np.log(p[0].item()) + np.log(1 - p[1].item())) / 2
    weighted = -(3.0 * np.log(p[0].item()) + np.log(1 - p[1].item())) / 2
    assert get_task("multi-label", labels).loss(out, y).item() == pytest.approx(plain, rel=1e-6)
    assert get_task("multi-label", labels, TrainConfig(pos_weight=True)).loss(out, y).item() == pytest.approx(
        weighted, rel=1e-6)


# ----------------------------------------------------------------------------------------------- multi-label
def test_multilabel_head_starts_at_the_label_frequencies():
    labels = get_task("multi-label", LabelMap(("a", "b"))).fit([("a",), ("a", "b"), (), ("a",)], None, "labels")
    assert labels.params["prior"] == [0.75, 0.25]
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(4, 2))
    get_task("multi-label", labels).init_head(head)
    assert torch.sigmoid(head[1].bias).tolist() == pytest.approx([0.75, 0.25], abs=1e-6)


@pytest.fixture(scope="module")
def multilabel_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    files = {s: jsonl(root / f"{s}.jsonl", ml_rows(n, seed)) for s, n, seed in
             (("train", 150, 1), ("validation", 40, 2), ("test", 40, 3))}
    data = ",".join(f"{s}={p}" for s, p in files.items())
    metrics = train(tiny_model_dir, data, root / "run", "--thresholds", "tuned")
    return root / "run", files, metrics


def _hot(rows) -> np.ndarray:
    return np.array([[float(n in r["labels"]) for n in NAMES] for r in rows])


def test_multilabel_run_scores_as_sklearn_does_on_the_reloaded_model(multilabel_run):
    out, files, metrics = multilabel_run
    clf = load(out)
    test = [json.loads(line) for line in open(files["test"])]
    scores = torch.sigmoid(clf.logits([r["text"] for r in test])).numpy()
    thresholds = np.array(json.loads((out / "labels.json").read_text())["params"]["thresholds"])
    pred, truth = (scores >= thresholds).astype(int), _hot(test).astype(int)
    m = metrics["test"]
    assert m["n"] == len(test)
    for avg in ("micro", "macro", "weighted", "samples"):
        assert m[f"f1_{avg}"] == pytest.approx(f1_score(truth, pred, average=avg, zero_division=0), abs=1e-9), avg
    assert m["hamming_loss"] == pytest.approx(hamming_loss(truth, pred), abs=1e-12)
    assert m["f1_micro"] > 0.6  # the labels are learnable from the words
    assert set(m["per_label"]) == set(NAMES) and (out / "per_label.png").stat().st_size > 0
    # predict answers the labels over their thresholds, highest score first
    first = clf(test[0]["text"])[0]
    assert {d["label"] for d in first} == {NAMES[j] for j in np.flatnonzero(pred[0])}
    assert [d["score"] for d in first] == sorted((d["score"] for d in first), reverse=True)


def test_tuned_thresholds_come_from_the_validation_split_alone(multilabel_run):
    out, files, _ = multilabel_run
    validation = [json.loads(line) for line in open(files["validation"])]
    scores = torch.sigmoid(load(out).logits([r["text"] for r in validation])).double().numpy()
    saved = json.loads((out / "labels.json").read_text())["params"]["thresholds"]
    np.testing.assert_allclose(saved, tune_thresholds(scores, _hot(validation)), atol=1e-6)
    assert json.loads((out / "train_config.json").read_text())["task"] == "multi-label"


def test_multilabel_csv_needs_a_separator_and_splits_on_it(tiny_model_dir, tmp_path, capsys):
    rows = ml_rows(60, 4)
    path = write_csv(tmp_path / "d.csv", [(r["text"], ";".join(r["labels"])) for r in rows], header=("text", "tags"))
    argv = ["train", "--model", tiny_model_dir, "--data", path, "--output", str(tmp_path / "o"), "--method",
            "probe", "--task", "multi-label", "--label-column", "tags"]
    assert_one_line_error(main, argv, "multi-label needs a list per row (JSON, JSON lines, Parquet) or "
                                      "--label-separator", capsys, tmp_path)
    assert main([*argv, "--label-separator", ";", "--epochs", "1"]) == 0
    assert json.loads((tmp_path / "o" / "labels.json").read_text())["id2label"] == dict(
        (str(i), n) for i, n in enumerate(NAMES))


# ----------------------------------------------------------------------------------------------- regression
@pytest.fixture(scope="module")
def regression_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reg")
    files = {s: write_csv(root / f"{s}.csv", reg_rows(n, seed), header=("text", "score"))
             for s, n, seed in (("train", 150, 1), ("test", 40, 3))}
    metrics = train(tiny_model_dir, f"train={files['train']},test={files['test']}", root / "run")
    return root / "run", files, metrics


def test_regression_run_scores_as_sklearn_and_scipy_do_on_the_reloaded_model(regression_run):
    out, files, metrics = regression_run
    rows = [line.rsplit(",", 1) for line in open(files["test"]).read().splitlines()[1:]]
    texts, y = [t for t, _ in rows], np.array([float(v) for _, v in rows])
    pred = np.array([p["score"] for p in load(out)(texts)])
    m = metrics["test"]
    assert m["mse"] == pytest.approx(mean_squared_error(y, pred), rel=1e-5)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
    assert m["r2"] == pytest.approx(r2_score(y, pred), rel=1e-5)
    assert m["pearson"] == pytest.approx(pearsonr(y, pred)[0], rel=1e-5)
    assert m["spearman"] == pytest.approx(spearmanr(y, pred)[0], rel=1e-5)
    assert m["pearson"] > 0.8  # the score is learnable from the words
    assert sum(map(sum, m["plot"]["grid"])) == sum(m["plot"]["residual_counts"]) == len(y)
    assert (out / "regression.png").stat().st_size > 0


def test_regression_saves_the_training_targets_scale(regression_run):
    out, files, _ = regression_run
    labels = json.loads((out / "labels.json").read_text())
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["task"] == "regression" and cfg["best_metric"] == "rmse"
    assert labels["id2label"] == {"0": "score"}
    # the run's training split is train.csv less its carved validation split: its mean lies within the file's range
    y = np.array([float(line.rsplit(",", 1)[1]) for line in open(files["train"]).read().splitlines()[1:]])
    assert y.min() < labels["params"]["mean"][0] < y.max() and 0.5 * y.std() < labels["params"]["std"][0] < 2 * y.std()


def test_non_numeric_regression_targets_name_the_row(tiny_model_dir, tmp_path, capsys):
    rows = reg_rows(30, 5)
    rows[6] = (rows[6][0], "high")
    path = write_csv(tmp_path / "d.csv", rows, header=("text", "score"))
    argv = ["train", "--model", tiny_model_dir, "--data", path, "--output", str(tmp_path / "o"), "--task",
            "regression"]
    assert_one_line_error(main, argv, "column 'score' is not numeric (row 7: 'high')", capsys, tmp_path)


@pytest.mark.parametrize("extra, message", [
    (["--thresholds", "tuned"], "--thresholds tuned sets multi-label decision thresholds; this run's task is "
                                "regression"),
    (["--probe-solver", "lbfgs"], "--probe-solver lbfgs solves a logistic regression, which does not fit task "
                                  "regression"),
    (["--best-metric", "accuracy"], "best_metric accuracy is not a regression metric"),
])
def test_settings_the_task_cannot_take_are_refused(tiny_model_dir, tmp_path, capsys, extra, message):
    path = write_csv(tmp_path / "d.csv", reg_rows(40, 6), header=("text", "score"))
    argv = ["train", "--model", tiny_model_dir, "--data", path, "--output", str(tmp_path / "o"), "--method",
            "probe", *extra]
    assert_one_line_error(main, argv, message, capsys, tmp_path)


# ----------------------------------------------------------------------------------------------- sentence pairs
def pair_rows(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(NAMES), rng.choice(NAMES)
        rows.append((" ".join(rng.choices(TOPICS[a], k=5)), " ".join(rng.choices(TOPICS[b], k=5)),
                     "same" if a == b else "different"))
    return rows


def test_sentence_pairs_are_detected_encoded_as_pairs_and_predicted_from_pairs(tiny_model_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    from adapters_kit.data.splits import load_splits
    from adapters_kit.modalities import get_modality

    rows = pair_rows(120, 7)
    rows.append(rows[0])  # a duplicate pair
    rows.append((rows[1][0], rows[2][1], rows[1][2]))  # the same first text with another second: not a duplicate
    path = write_csv(tmp_path / "p.csv", rows, header=("sentence1", "sentence2", "label"))
    cfg = TrainConfig(model=tiny_model_dir, data=path, max_length=32)
    splits = load_splits(cfg, get_modality("text", cfg))
    assert splits.pair_column == "sentence2" and splits.input_column == "sentence1"
    assert splits.report["duplicates_dropped"]["train"] == 1
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = splits.datasets["train"][0]["input"]
    encoded = get_modality("text", cfg.replace(text_pair_column="sentence2")).encode(tok, [first])
    assert encoded["input_ids"][0] == tok(first[0], first[1], truncation="longest_first", max_length=32)["input_ids"]
    assert encoded["token_type_ids"][0].count(1) > 0  # the second text is segment B

    out = tmp_path / "run"
    metrics = train(tiny_model_dir, path, out, "--epochs", "5")
    clf = load(out)
    a, b = rows[3][0], rows[3][1]
    assert clf((a, b)) == clf({"text": a, "text_pair": b}) == clf([(a, b)])  # one input: a list of one
    assert json.loads((out / "run_info.json").read_text())["pair_column"] == "sentence2"
    assert "pipeline_tag: text-classification" in (out / "README.md").read_text()
    assert metrics["validation"]["n"] > 0
    with pytest.raises(Exception, match="this run reads sentence pairs"):
        clf("one text alone")
    capsys.readouterr()
    assert main(["predict", str(out), f"{a}\t{b}"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[-1].split("  ")[0])
    assert line["label"] == clf((a, b))[0]["label"]


@pytest.mark.parametrize("extra, message", [
    (["--text-pair-column", "nope"], "text pair column 'nope' not found; columns are: sentence1, sentence2, label"),
    (["--text-column", "sentence1", "--text-pair-column", "sentence1"], "--text-column and --text-pair-column both "
                                                                        "name 'sentence1'"),
])
def test_bad_pair_columns_are_one_line(tiny_model_dir, tmp_path, capsys, extra, message):
    path = write_csv(tmp_path / "p.csv", pair_rows(30, 8), header=("sentence1", "sentence2", "label"))
    argv = ["train", "--model", tiny_model_dir, "--data", path, "--output", str(tmp_path / "o"), *extra]
    assert_one_line_error(main, argv, message, capsys, tmp_path)


# ----------------------------------------------------------------------------------------------- export
def test_regression_exports_answer_on_the_targets_scale(regression_run, tmp_path):
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, files, _ = regression_run
    texts = [line.rsplit(",", 1)[0] for line in open(files["test"]).read().splitlines()[1:9]]
    expected = np.array([p["score"] for p in load(out)(texts)])
    assert main(["export", str(out), "--to", "merged", "--output", str(tmp_path / "merged")]) == 0
    merged = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "merged"), trust_remote_code=True)
    assert merged.config.problem_type == "regression"
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "merged"), trust_remote_code=True)
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        np.testing.assert_allclose(merged(**batch).logits[:, 0].numpy(), expected, atol=1e-4)
    assert main(["export", str(out), "--to", "onnx", "--output", str(tmp_path / "onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    feed = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    np.testing.assert_allclose(session.run(["logits"], feed)[0][:, 0], expected, atol=1e-3)


def test_multilabel_merged_export_is_a_multi_label_model_with_the_thresholds(multilabel_run, tmp_path):
    from transformers import AutoConfig

    out, _, _ = multilabel_run
    assert main(["export", str(out), "--to", "merged", "--output", str(tmp_path / "merged")]) == 0
    assert AutoConfig.from_pretrained(str(tmp_path / "merged"), trust_remote_code=True).problem_type == \
        "multi_label_classification"
    saved = json.loads((out / "labels.json").read_text())["params"]["thresholds"]
    assert json.loads((tmp_path / "merged" / "labels.json").read_text())["params"]["thresholds"] == saved


# ----------------------------------------------------------------------------------------------- registry
def test_a_task_name_is_spelled_only_where_it_is_registered():
    """As for methods (tests/test_recipes.py): the code asks the registered task, never compares its name. Exempt:
    ``DEFAULT_TASK`` (the task of run folders written before tasks were recorded) and a built-in data set's
    declared ``task`` (catalog data, what ``adapters-kit datasets`` lists)."""
    import ast
    from pathlib import Path

    from adapters_kit.tasks import TASKS
    from tests.test_recipes import _docstrings

    pkg = Path(__file__).parents[1] / "adapters_kit"
    found = []
    for path in sorted(pkg.rglob("*.py")):
        module = "adapters_kit." + ".".join(path.relative_to(pkg).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree) | {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                                    and [getattr(t, "id", None) for t in n.targets] == ["DEFAULT_TASK"]}
        if module == "adapters_kit.builtin.catalog":
            skip |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "task"}
            skip |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)
                     and getattr(n.target, "id", None) == "task"}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in TASKS and id(node) not in skip
                    and TASKS.get(node.value).__module__ != module):
                found.append(f"{path.relative_to(pkg)}:{node.lineno} {node.value!r}")
    assert not found, "task names outside their registration: " + ", ".join(found)


def test_best_metric_choices_are_the_tasks_metrics():
    from adapters_kit.config import LOWER_IS_BETTER, METRICS_FOR_BEST
    from adapters_kit.tasks import TASKS

    classes = [TASKS.get(n) for n in TASKS.names()]
    assert set(METRICS_FOR_BEST) == {m for c in classes for m in c.selectable}
    assert set(LOWER_IS_BETTER) == {m for c in classes for m in c.lower_is_better}


# ----------------------------------------------------------------------------------------------- token classification
def tagged_rows(n: int, seed: int) -> list[dict]:
    """Sentences of filler and topic words; a topic word is an entity of its topic (IOB2 tags; an I- tag marks the
    second word of the occasional two-word entity)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(2, 4)):
            words += rng.choices(FILLER, k=rng.randint(1, 3))
            tags += ["O"] * (len(words) - len(tags))
            topic = rng.choice(NAMES)
            span = rng.choices(TOPICS[topic], k=2 if rng.random() < 0.05 else 1)
            words += span
            tags += [f"B-{topic.upper()}"] + [f"I-{topic.upper()}"] * (len(span) - 1)
        rows.append({"tokens": words, "ner_tags": tags})
    return rows


def test_tags_align_to_the_first_sub_token_and_words_cut_off_are_kept_for_scoring():
    from transformers import AutoTokenizer

    from adapters_kit.builtin.resolve import resolve_model
    from adapters_kit.modalities import get_modality
    from adapters_kit.tasks.token import IGNORE, TRUNCATED, align_labels

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm-l6")[0])  # a real WordPiece vocabulary
    words = ["Tokenization", "of", "Kilimanjaro", "expeditions"]
    enc = get_modality("text", TrainConfig(max_length=6)).encode(tok, [words])
    ids = enc["word_ids"][0]
    assert ids[0] == -1 and ids[1] == ids[2] == 0  # [CLS], then "Tokenization" in more than one piece
    labels = align_labels(ids, [1, 0, 2, 3])
    firsts = [labels[ids.index(w)] for w in sorted(set(ids) - {-1})]
    assert firsts == [1, 0, 2][: len(firsts)]
    assert all(labels[p] == IGNORE for p, w in enumerate(ids) if w < 0 or ids.index(w) != p)
    kept = len(set(ids) - {-1})
    assert labels[len(ids):] == [TRUNCATED - t for t in [1, 0, 2, 3][kept:]] and kept < 4


@pytest.fixture(scope="module")
def token_run(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    files = {s: jsonl(root / f"{s}.jsonl", tagged_rows(n, seed)) for s, n, seed in
             (("train", 160, 1), ("validation", 30, 2), ("test", 40, 3))}
    out = root / "run"
    argv = ["train", "--model", tiny_model_dir, "--data", ",".join(f"{s}={p}" for s, p in files.items()),
            "--output", str(out), "--method", "full", "--epochs", "6", "--lr", "3e-3", "--batch-size", "8"]
    assert main(argv) == 0
    return out, files, json.loads((out / "metrics.json").read_text())


def test_token_classification_scores_entities_as_seqeval_does(token_run):
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    out, files, metrics = token_run
    clf = load(out)
    test = [json.loads(line) for line in open(files["test"])]
    truth, pred = [], []
    for row, (spans, logits) in zip(test, clf._tagged([r["tokens"] for r in test])):
        truth.append(row["ner_tags"])
        pred.append([clf.labels[int(logits[w["token"]].argmax())] for w in spans])
    m = metrics["test"]
    kw = {"mode": "strict", "scheme": IOB2}
    assert m["entity_f1"] == pytest.approx(f1_score(truth, pred, **kw), abs=1e-12)
    assert m["entity_precision"] == pytest.approx(precision_score(truth, pred, **kw), abs=1e-12)
    assert m["entity_recall"] == pytest.approx(recall_score(truth, pred, **kw), abs=1e-12)
    assert m["entity_f1"] > 0.5  # topic words are learnable
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["task"] == "token-classification" and cfg["pooling"] == "tokens" and cfg["best_metric"] == "entity_f1"
    assert "pipeline_tag: token-classification" in (out / "README.md").read_text()
    assert (out / "per_type.png").stat().st_size > 0


def test_token_predictions_name_entities_with_their_offsets(token_run):
    out, _, _ = token_run
    clf = load(out)
    text = "the match goal today and the phone chip"
    found = clf(text)[0]
    assert found == clf([text])[0] == clf([text.split()])[0]  # a text, a batch of texts, a list of words
    for entity in found:
        assert text[entity["start"]:entity["end"]] == entity["word"]
        assert entity["entity_group"] in {"SPORT", "TECH", "BUSINESS"} and 0 < entity["score"] <= 1


def test_conll_files_train_and_tag_count_mismatches_are_one_line(tiny_model_dir, tmp_path, capsys):
    rows = tagged_rows(60, 5)
    text = "-DOCSTART- O\n\n" + "\n\n".join("\n".join(f"{w} {t}" for w, t in zip(r["tokens"], r["ner_tags"]))
                                          for r in rows) + "\n"
    (tmp_path / "train.conll").write_text(text)
    from adapters_kit.data.files import load_file

    ds = load_file(str(tmp_path / "train.conll"), "train")
    assert ds["tokens"] == [r["tokens"] for r in rows] and ds["tags"] == [r["ner_tags"] for r in rows]
    bad = [dict(r) for r in rows]
    bad[4]["ner_tags"] = bad[4]["ner_tags"][:-1]
    path = jsonl(tmp_path / "bad.jsonl", bad)
    argv = ["train", "--model", tiny_model_dir, "--data", path, "--output", str(tmp_path / "o"), "--task",
            "token-classification"]
    assert_one_line_error(main, argv, f"row 5 has {len(rows[4]['tokens'])} words but "
                                      f"{len(rows[4]['tokens']) - 1} tags in column 'ner_tags'", capsys, tmp_path)
    good = ["train", "--model", tiny_model_dir, "--data", str(tmp_path / "train.conll"), "--output",
            str(tmp_path / "o"), "--method", "lp-ft"]  # the task is detected: words beside tags
    assert_one_line_error(main, good, "--method lp-ft works on one pooled vector per input; task "
                                      "token-classification scores every token", capsys, tmp_path)


def test_a_token_run_exports_as_a_stock_token_classification_checkpoint(token_run, tmp_path, capsys):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    out, _, _ = token_run
    assert main(["export", str(out), "--to", "merged", "--output", str(tmp_path / "merged")]) == 0
    stock = AutoModelForTokenClassification.from_pretrained(str(tmp_path / "merged"))  # no remote code
    assert type(stock).__name__ == "BertForTokenClassification"
    words = "the match goal today and the phone chip".split()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    batch = tok([words], is_split_into_words=True, return_tensors="pt")
    clf = load(out)
    with torch.inference_mode():
        torch.testing.assert_close(stock(**batch).logits[0], clf.logits([words])[0], atol=1e-4, rtol=0)
    tagger = pipeline("token-classification", model=str(tmp_path / "merged"), aggregation_strategy="simple")
    expected = [(e["entity_group"], e["start"], e["end"]) for e in clf(" ".join(words))[0]]
    assert [(e["entity_group"], e["start"], e["end"]) for e in tagger(" ".join(words))] == expected
    assert_one_line_error(main, ["export", str(out), "--to", "onnx", "--output", str(tmp_path / "x")],
                          "its ONNX and int8 exports are not built yet", capsys, tmp_path)


def _close(a, b, tol=1e-5) -> bool:
    """Equal structures of dicts / lists / strings, floats within ``tol``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= tol
    return a == b


def test_served_task_types_answer_what_load_answers(multilabel_run, regression_run, token_run):
    """``adapters-kit serve``'s model pool, one batch over three task types: each answer is load()'s."""
    from adapters_kit.runs.pool import Pool, Request

    runs = {"tags": multilabel_run[0], "score": regression_run[0], "ner": token_run[0]}
    texts = ["the match goal today and the phone chip", "market shares profit"]
    pool = Pool()
    for name, out in runs.items():
        pool.load(out, name)
    answers = pool.predict([Request(name, texts) for name in runs])
    for (name, out), answer in zip(runs.items(), answers):
        expected = load(out)(texts)
        assert _close(answer, expected), (name, answer, expected)
    assert answers[2][0] and answers[2][0][0]["entity_group"] in {"SPORT", "TECH", "BUSINESS"}
