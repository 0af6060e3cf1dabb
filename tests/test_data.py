import numpy as np
import pytest

from adapters_kit import TrainConfig, UserError
from adapters_kit.data.splits import LabelMap, find_column, load_splits
from adapters_kit.modalities import TextModality
from adapters_kit.tasks import get_task
from tests.conftest import make_texts, write_csv

COLS = TextModality()


def splits_for(data, **kw):
    return load_splits(TrainConfig(data=data, **kw), COLS)


def texts(ds):
    return set(ds["input"])


def test_files_with_string_labels_become_sorted_label_map(text_files):
    s = splits_for(f"train={text_files['train']},test={text_files['test']}")
    assert s.labels.names == ("business", "sport", "tech")
    assert s.labels.label2id == {"business": 0, "sport": 1, "tech": 2}
    assert set(s.datasets) == {"train", "validation", "test"}
    assert s.datasets["train"].column_names == ["input", "label"]
    assert set(s.datasets["train"]["label"]) == {0, 1, 2}


def test_duplicates_removed_and_splits_disjoint(text_files):
    s = splits_for(f"train={text_files['train']},test={text_files['test']}")
    tr, va, te = (texts(s.datasets[k]) for k in ("train", "validation", "test"))
    assert not (tr & te) and not (tr & va) and not (va & te)
    for k in s.datasets:
        assert len(texts(s.datasets[k])) == len(s.datasets[k]), f"duplicates left in {k}"
    # 3 duplicated rows inside train, plus the 2 train texts copied into test (dropped from train)
    dropped = s.report["duplicates_dropped"]
    assert dropped["train"] >= 5 and sum(s.report["sizes"].values()) + sum(dropped.values()) == 93 + 22


def test_validation_is_stratified_and_always_the_same(text_files):
    spec = f"train={text_files['train']}"
    a, b = splits_for(spec, seed=1), splits_for(spec, seed=99)
    assert a.datasets["validation"]["input"] == b.datasets["validation"]["input"]  # split seed is fixed
    counts = [a.datasets["validation"]["label"].count(i) for i in range(3)]
    assert max(counts) - min(counts) <= 1


def test_int_labels_sorted_numerically(tmp_path):
    rows = [(f"text number {i}", [2, 10, 1][i % 3]) for i in range(30)]
    s = splits_for(write_csv(tmp_path / "d.csv", rows))
    assert s.labels.names == ("1", "2", "10")


def test_columns_are_detected_case_insensitively_or_given(tmp_path):
    rows = [(f"doc {i}", "x" if i % 2 else "y", i) for i in range(20)]
    p = write_csv(tmp_path / "d.csv", rows, header=("Content", "Category", "id"))
    s = splits_for(p)
    assert (s.input_column, s.label_column) == ("Content", "Category")
    with pytest.raises(UserError, match=r"label column 'nope' not found; columns are: Content, Category, id"):
        splits_for(p, label_column="nope")


def test_missing_column_lists_columns_found(tmp_path):
    p = write_csv(tmp_path / "d.csv", [("a", "b")] * 5, header=("foo", "bar"))
    with pytest.raises(UserError, match=r"no text column found among: foo, bar; name it with --text-column"):
        splits_for(p)
    assert find_column(["foo", "bar"], "bar", (), "label", "--label-column") == "bar"


def test_one_class_is_refused(tmp_path):
    p = write_csv(tmp_path / "d.csv", [(f"t{i}", "only") for i in range(10)])
    with pytest.raises(UserError, match="has only one class"):
        splits_for(p)


@pytest.mark.parametrize("content,ext,message", [
    ("", ".csv", "is empty"),
    ("text,label\n", ".csv", "has no rows"),
    ("\x00\x01garbage", ".parquet", "cannot read .* as PARQUET"),
    ("x", ".xlsx", "unknown extension '.xlsx'"),
])
def test_bad_files(tmp_path, content, ext, message):
    p = tmp_path / f"d{ext}"
    p.write_text(content)
    with pytest.raises(UserError, match=message):
        splits_for(str(p))


def test_missing_file_and_bad_spec(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        splits_for(f"train={tmp_path / 'nope.csv'}")
    with pytest.raises(UserError, match="names no train file"):
        splits_for(f"test={tmp_path / 'x.csv'}")
    with pytest.raises(UserError, match=r"not a built-in \(bbc-news"):
        splits_for("no-such-dataset-anywhere")


def test_json_lines_and_tsv(tmp_path):
    import json

    rows = make_texts(10, seed=3)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"sentence": t, "labels": y}) + "\n" for t, y in rows))
    (tmp_path / "b.tsv").write_text("sentence\tlabels\n" + "".join(f"{t}\t{y}\n" for t, y in rows[:8]))
    s = splits_for(f"train={tmp_path / 'a.jsonl'}")
    assert s.input_column == "sentence" and len(s.labels) == 3
    assert len(splits_for(f"train={tmp_path / 'a.jsonl'},test={tmp_path / 'b.tsv'}").datasets["test"]) > 0


def test_unknown_eval_labels_are_counted_not_scored(tmp_path, text_files):
    """A few rows of a class the run never saw are counted and left out; a third of the rows is an error
    (``MAX_DROPPED_SHARE``), no longer a quiet drop."""
    import csv

    labels = LabelMap(("business", "sport"))
    rows = [(f"doc {i}", "business" if i % 2 else "sport") for i in range(40)] + [("doc x", "tech"), ("doc y", "tech")]
    s = load_splits(TrainConfig(data=write_csv(tmp_path / "few.csv", rows)), COLS, labels=labels)
    assert s.report["unknown_labels"]["train"] == 2
    assert sum(s.report["sizes"].values()) == 40
    assert set(s.datasets["train"]["label"]) <= {0, 1}
    with open(text_files["train"], newline="") as fh:
        tech = sum(row["label"] == "tech" for row in csv.DictReader(fh))
    with pytest.raises(UserError, match=rf"split 'train' loses {tech} of its 93 rows .* labels the run never had"):
        load_splits(TrainConfig(data=f"train={text_files['train']}"), COLS, labels=labels)


def test_max_train_samples_keeps_test_untouched(text_files):
    spec = f"train={text_files['train']},test={text_files['test']}"
    full, small = splits_for(spec), splits_for(spec, max_train_samples=12)
    assert len(small.datasets["train"]) == 12
    assert small.datasets["test"]["input"] == full.datasets["test"]["input"]


def test_max_eval_samples_keeps_a_stratified_seed_independent_subset_of_each_held_out_split(text_files):
    spec = f"train={text_files['train']},test={text_files['test']}"
    full, small = splits_for(spec), splits_for(spec, max_eval_samples=6)
    assert small.datasets["train"]["input"] == full.datasets["train"]["input"]  # training data untouched
    for split in ("validation", "test"):
        whole, part = full.datasets[split], small.datasets[split]
        assert len(part) == 6 < len(whole)
        assert set(part["input"]) <= set(whole["input"])
        share = np.bincount(whole["label"], minlength=3) / len(whole)  # stratified: each class near its share
        assert np.abs(np.bincount(part["label"], minlength=3) - 6 * share).max() <= 1
    other_seed = splits_for(spec, max_eval_samples=6, seed=7)
    assert other_seed.datasets["test"]["input"] == small.datasets["test"]["input"]
    assert len(splits_for(spec, max_eval_samples=10_000).datasets["test"]) == len(full.datasets["test"])


@pytest.mark.integration
def test_bbc_builtin_is_split_80_10_10_without_leaks():
    s = splits_for("bbc-news")
    sizes = s.report["sizes"]
    assert s.report["duplicates_dropped"]["train"] == 98
    assert sum(sizes.values()) == 2225 - 98
    assert sizes["test"] == pytest.approx(0.1 * 2127, abs=2) and sizes["validation"] == pytest.approx(0.1 * 2127,
                                                                                                        abs=2)
    tr, va, te = (texts(s.datasets[k]) for k in ("train", "validation", "test"))
    assert not (tr & te) and not (tr & va) and not (va & te)
    assert s.labels.names == ("business", "entertainment", "politics", "sports", "tech")


def test_length_grouped_batches_hold_similar_lengths_and_keep_the_plain_shuffle_for_equal_lengths():
    import numpy as np
    from datasets import Dataset

    from adapters_kit.data.splits import GROUP_SIZE, make_loader

    def collate(rows):
        return [r["i"] for r in rows]

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 120, size=2500).tolist()
    ds = Dataset.from_dict({"i": list(range(2500)), "input_ids": [[1] * n for n in lengths]})
    grouped = [i for b in make_loader(ds, collate, 16, shuffle=True, seed=3, group_by_length=True) for i in b]
    plain = [i for b in make_loader(ds, collate, 16, shuffle=True, seed=3) for i in b]
    assert sorted(grouped) == list(range(2500))  # every example once
    for start in range(0, 2500, GROUP_SIZE):  # each group is the plain shuffle's group, ordered by length
        group = grouped[start:start + GROUP_SIZE]
        assert set(group) == set(plain[start:start + GROUP_SIZE])
        assert [lengths[i] for i in group] == sorted((lengths[i] for i in group), reverse=True)
    padded = sum(16 * max(lengths[i] for i in grouped[k:k + 16]) for k in range(0, 2500, 16))
    padded_plain = sum(16 * max(lengths[i] for i in plain[k:k + 16]) for k in range(0, 2500, 16))
    assert padded < 0.6 * padded_plain
    same = Dataset.from_dict({"i": list(range(300)), "input_ids": [[1] * 8] * 300})
    assert [i for b in make_loader(same, collate, 16, shuffle=True, seed=5, group_by_length=True) for i in b] == \
        [i for b in make_loader(same, collate, 16, shuffle=True, seed=5) for i in b]


def test_evaluation_runs_longest_first_and_scores_as_the_split_order(tiny_model_dir, text_files):
    """Evaluation loaders (with ``group_by_length``) yield every example once, longest first; the metrics are those
    of the split's own order (to float tolerance: only the padding of each example's batch differs)."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoTokenizer, BertModel

    from adapters_kit import TrainConfig
    from adapters_kit.data.splits import load_splits, make_loader, prepare
    from adapters_kit.evaluation.evaluator import SPEED_KEYS, evaluate
    from adapters_kit.modalities import get_modality
    from adapters_kit.model.modeling import build_model

    cfg = TrainConfig(data=f"train={text_files['train']},test={text_files['test']}", model=tiny_model_dir,
                      method="probe", pooling="mean")
    modality = get_modality("text", cfg)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    splits = load_splits(cfg, modality)
    names = splits.labels.names
    test = prepare(splits.datasets["test"], modality, tok)
    collate = modality.collator(tok)
    lengths = [len(ids) for ids in test["input_ids"]]
    assert len(set(lengths)) > 3  # the texts differ in length, so the order matters
    ordered = make_loader(test, collate, 7, shuffle=False, group_by_length=True)
    seen = [len(ids) for b in ordered for ids in b["input_ids"]]
    batches = [b["attention_mask"].sum(1).tolist() for b in ordered]
    assert sorted(sum(batches, [])) == sorted(lengths) and len(seen) == len(test)
    assert sum(batches, []) == sorted(lengths, reverse=True)
    torch.manual_seed(0)
    model = build_model(cfg, BertModel.from_pretrained(tiny_model_dir), num_labels=len(names))
    acc = Accelerator(cpu=True)
    task = get_task("classification", LabelMap(tuple(names)))
    plain = evaluate(model, make_loader(test, collate, 7, shuffle=False), acc, task)
    grouped = evaluate(model, ordered, acc, task)
    for key in ("accuracy", "f1_macro", "log_loss", "ece", "roc_auc"):
        assert grouped[key] == pytest.approx(plain[key], abs=1e-6), key
    assert set(SPEED_KEYS) <= set(grouped)
