"""Data that used to be read wrongly or quietly dropped: labels as written, one label normalisation, losses that
stop the run, rare classes and swapped columns, a split named twice, and undecodable files named by line.

Bad input goes through the CLI (one line, exit 2, nothing written under the data folder, no output folder); the
good cases call ``load_splits`` and compare with what the test wrote.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from adapters_kit import TrainConfig, UserError
from adapters_kit.cli import main
from adapters_kit.data import files as data_files
from adapters_kit.data.splits import MAX_DROPPED_SHARE, LabelMap, load_splits, normalize_label
from adapters_kit.modalities import TextModality
from tests.cli_cases import assert_one_line_error
from tests.conftest import write_csv

TEXT = TextModality()


def rows_of(n: int, labels=("sport", "business"), start: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct texts, labels taken in turn."""
    return [(f"match goal team {start + i}", labels[i % len(labels)]) for i in range(n)]


def splits(data: str, **kw):
    return load_splits(TrainConfig(data=data, **kw), TEXT)


def all_rows(s) -> list[tuple[str, str]]:
    """(text, label name) of every row the splits kept."""
    return [(t, s.labels.names[y]) for ds in s.datasets.values() for t, y in zip(ds["input"], ds["label"])]


def jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def json_error(line: str) -> str:
    """json's own message for a broken line: what the one-line error must quote."""
    try:
        json.loads(line)
    except json.JSONDecodeError as e:
        return e.msg
    raise AssertionError(f"{line!r} is valid JSON")


# ----------------------------------------------------------------------------------------------- bad input, CLI
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    """Every bad file, in one data folder the cases watch; a finished probe run for the eval case."""
    root = tmp_path_factory.mktemp("safety")
    good = rows_of(40)
    w = {"root": root, "model": tiny_model_dir, "train": write_csv(root / "train.csv", good),
         "copy": write_csv(root / "copy.csv", good)}
    w["blank_labels"] = write_csv(root / "blank_labels.csv", [(t, "" if i < 6 else y) for i, (t, y) in
                                                              enumerate(good)])
    w["blank_texts"] = write_csv(root / "blank_texts.csv", [("" if i < 6 else t, y) for i, (t, y) in
                                                            enumerate(good)])
    w["unknown_test"] = write_csv(root / "unknown_test.csv", rows_of(10, ("tennis",) * 3 + ("golf",) * 2, 100))
    w["some_unknown"] = write_csv(root / "some_unknown.csv", rows_of(7, start=200) + rows_of(3, ("tennis",), 300))
    # Latin-1 bytes on one known line of a CSV, a TSV and a JSONL file
    lines = [b"text,label"] + [f"{t},{y}".encode() for t, y in good]
    lines[6] = "caf\xe9 match goal,sport".encode("latin-1")
    (root / "latin1.csv").write_bytes(b"\n".join(lines) + b"\n")
    (root / "latin1.tsv").write_bytes(b"\n".join(x.replace(b",", b"\t") for x in lines) + b"\n")
    (root / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")  # a binary file named .csv
    records = [json.dumps({"text": t, "label": y}).encode() for t, y in good]
    records[3] = json.dumps({"text": "caf\xe9", "label": "sport"}, ensure_ascii=False).encode("latin-1")
    (root / "latin1.jsonl").write_bytes(b"\n".join(records) + b"\n")
    # a broken record on line 5 of a JSON-lines file, and the same content in a .json file
    broken = [json.dumps({"text": t, "label": y}) for t, y in good]
    broken[4] = '{"text": "match goal", "label": }'
    for ext in ("jsonl", "json"):
        (root / f"broken.{ext}").write_text("\n".join(broken) + "\n")
    w["broken_line"] = broken[4]
    # one text / label per row is needed: lists and records in Parquet and JSON
    pd.DataFrame({"text": [t for t, _ in good], "label": [[y] for _, y in good]}).to_parquet(root / "lists.parquet")
    pd.DataFrame({"text": [{"body": t} for t, _ in good], "label": [y for _, y in good]}).to_parquet(
        root / "records.parquet")
    jsonl(root / "lists.jsonl", [{"text": t, "label": [y, "x"]} for t, y in good])
    assert main(["train", "--model", tiny_model_dir, "--data", w["train"], "--method", "probe", "--epochs", "1",
                 "--output", str(root / "run")]) == 0
    return w


def first_line_of(path, byte: int) -> int:
    """The line of the first occurrence of ``byte`` in the file."""
    raw = open(path, "rb").read()
    return raw[:raw.index(bytes([byte]))].count(b"\n") + 1


def train(w, data, *extra):
    return ["train", "--model", w["model"], "--data", data, "--output", str(w["root"] / "out"), "--method", "probe",
            "--epochs", "1", *extra]


CASES = [
    ("blank labels over the share", lambda w: train(w, w["blank_labels"]),
     lambda w: "split 'train' loses 6 of its 40 rows (15%, more than 10%) to missing or unknown labels "
               "(6 with a missing input or label)"),
    ("blank texts over the share", lambda w: train(w, w["blank_texts"]),
     lambda w: "split 'train' loses 6 of its 40 rows (15%"),
    ("test split whose labels training never had", lambda w: train(w, f"train={w['train']},test={w['unknown_test']}"),
     lambda w: "split 'test' is empty after cleaning: all its 10 row(s) were dropped (10 with labels the training "
               "split never had ('tennis', 'golf'))"),
    ("test split with 30% unknown labels", lambda w: train(w, f"train={w['train']},test={w['some_unknown']}"),
     lambda w: "split 'test' loses 3 of its 10 rows (30%, more than 10%) to missing or unknown labels (3 with labels "
               "the training split never had ('tennis'))"),
    ("training split that only repeats the test split", lambda w: train(w, f"train={w['train']},test={w['copy']}"),
     lambda w: "split 'train' is empty after cleaning: all its 40 row(s) were dropped (40 duplicate input(s))"),
    ("eval on a test split of labels the run never saw",
     lambda w: ["eval", str(w["root"] / "run"), "--data", f"train={w['train']},test={w['unknown_test']}"],
     lambda w: "split 'test' is empty after cleaning: all its 10 row(s) were dropped (10 with labels the run never "
               "had ('tennis', 'golf'))"),
    ("swapped text and label columns", lambda w: train(w, w["train"], "--text-column", "label", "--label-column",
                                                       "text"),
     lambda w: "label column 'text' has 40 different values in 40 training rows, so it looks like free text or ids, "
               "not classes; check --label-column and --text-column"),
    ("train named twice", lambda w: train(w, f"train={w['train']},train={w['copy']}"),
     lambda w: f"--data names the train split twice (train={w['train']} and train={w['copy']})"),
    ("validation named twice through an alias", lambda w: train(w, f"train={w['train']},valid={w['copy']},"
                                                                   f"validation={w['copy']}"),
     lambda w: "--data names the validation split twice"),
    *[(f"latin-1 {ext}", lambda w, ext=ext: train(w, str(w["root"] / f"latin1.{ext}")),
       lambda w, ext=ext: f"data file {w['root'] / f'latin1.{ext}'} is not valid UTF-8 "
                          f"(line {first_line_of(w['root'] / f'latin1.{ext}', 0xE9)}: byte 0xe9); re-save it as UTF-8")
      for ext in ("csv", "tsv", "jsonl")],
    ("binary file named .csv", lambda w: train(w, str(w["root"] / "image.csv")),
     lambda w: f"cannot read data file {w['root'] / 'image.csv'} as text: it holds a NUL byte (line "
               f"{first_line_of(w['root'] / 'image.csv', 0)}), so it is binary or UTF-16, not UTF-8; check the file "
               f"format"),
    *[(f"broken line in a .{ext} file", lambda w, ext=ext: train(w, str(w["root"] / f"broken.{ext}")),
       lambda w, ext=ext: f"data file {w['root'] / f'broken.{ext}'} is not valid JSON "
                          f"(line 5: {json_error(w['broken_line'])})")
      for ext in ("jsonl", "json")],
    ("parquet labels that are lists", lambda w: train(w, str(w["root"] / "lists.parquet"), "--task", "classification"),
     lambda w: f"data file {w['root'] / 'lists.parquet'}: column 'label' holds a list or record (row 1: "
               f"['sport']); give one label per row"),
    ("parquet texts that are records", lambda w: train(w, str(w["root"] / "records.parquet")),
     lambda w: "column 'text' holds a list or record (row 1: {'body': 'match goal team 0'}); give one text per row"),
    ("json labels that are lists", lambda w: train(w, str(w["root"] / "lists.jsonl"), "--task", "classification"),
     lambda w: "column 'label' holds a list or record (row 1: ['sport', 'x']); give one label per row"),
]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_one_line_and_writes_nothing(world, capsys, name, argv, message):
    assert_one_line_error(main, argv(world), message(world), capsys, world["root"])


def test_a_blank_label_in_an_integer_column_still_trains_and_scores_the_test_split(tiny_model_dir, tmp_path):
    """The bug: one blank label made the column floats ("0.0"), every test row ("0") unknown, and a run with test
    n=0 was saved."""
    train_rows = [(t, str(i % 2)) for i, (t, _) in enumerate(rows_of(40))] + [("match goal blank", "")]
    test_rows = [(t, str(i % 2)) for i, (t, _) in enumerate(rows_of(10, start=500))]
    data = f"train={write_csv(tmp_path / 'train.csv', train_rows)},test={write_csv(tmp_path / 'test.csv', test_rows)}"
    out = tmp_path / "run"
    assert main(["train", "--model", tiny_model_dir, "--data", data, "--method", "probe", "--epochs", "1", "--output",
                 str(out)]) == 0
    assert json.loads((out / "labels.json").read_text())["id2label"] == {"0": "0", "1": "1"}
    assert json.loads((out / "metrics.json").read_text())["test"]["n"] == len(test_rows)
    report = json.loads((out / "run_info.json").read_text())["data_report"]
    assert report["null_rows"] == {"train": 1, "test": 0} and report["unknown_labels"] == {"train": 0, "test": 0}


# ----------------------------------------------------------------------------------------------- labels as written
def test_integer_labels_with_a_gap_keep_their_names_and_each_row_its_class(tmp_path):
    written = [(t, str(i % 2)) for i, (t, _) in enumerate(rows_of(40))]
    rows = written + [("match goal blank", ""), ("   ", "1")]  # a blank label, and a text of spaces only
    s = splits(write_csv(tmp_path / "d.csv", rows))
    assert s.labels.names == ("0", "1")
    assert s.report["null_rows"] == {"train": 2}
    assert sorted(all_rows(s)) == sorted(written)


def test_zero_padded_labels_stay_verbatim_in_integer_order(tmp_path):
    padded = rows_of(30, ("010", "001", "002"))
    s = splits(write_csv(tmp_path / "padded.csv", padded))
    assert s.labels.names == ("001", "002", "010")
    assert sorted(all_rows(s)) == sorted(padded)
    # integer order, not string order ("010" < "9" as strings)
    mixed = splits(write_csv(tmp_path / "mixed.csv", rows_of(40, ("010", "9", "001", "002"))))
    assert mixed.labels.names == ("001", "002", "9", "010")
    # any name that is not an integer literal: string order
    words = splits(write_csv(tmp_path / "words.csv", rows_of(30, ("10", "9", "x"))))
    assert words.labels.names == ("10", "9", "x")


def test_surrounding_whitespace_is_the_only_label_normalisation(tmp_path):
    rows = rows_of(40, ("sport", "sport ", " sport", "Sport", "business"))
    s = splits(write_csv(tmp_path / "d.csv", rows))
    assert s.labels.names == ("Sport", "business", "sport")
    assert sorted(all_rows(s)) == sorted((t, y.strip()) for t, y in rows)


def test_na_and_none_are_classes_and_texts_not_missing_values(tmp_path):
    rows = rows_of(40, ("NA", "None")) + [("NA", "NA"), ("None", "None"), ("null", "NA")]
    s = splits(write_csv(tmp_path / "d.csv", rows))
    assert s.labels.names == ("NA", "None")
    assert s.report["null_rows"] == {"train": 0}
    assert sorted(all_rows(s)) == sorted(rows)


def test_typed_formats_write_labels_as_text_and_a_float_gap_does_not_rename_classes(tmp_path):
    ints = splits(jsonl(tmp_path / "ints.jsonl", [{"text": t, "label": [3, 10][i % 2]}
                                                  for i, (t, _) in enumerate(rows_of(20))]))
    assert ints.labels.names == ("3", "10")
    # pandas stores an integer column with a gap as floats: 0.0 / 1.0 in train, 0 / 1 in test are one class each
    train = pd.DataFrame({"text": [t for t, _ in rows_of(41)], "label": [i % 2 for i in range(40)] + [None]})
    test = pd.DataFrame({"text": [t for t, _ in rows_of(10, start=100)], "label": [i % 2 for i in range(10)]})
    assert train["label"].dtype == np.float64 and test["label"].dtype == np.int64
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    s = splits(f"train={tmp_path / 'train.parquet'},test={tmp_path / 'test.parquet'}")
    assert s.labels.names == ("0", "1")
    assert s.report["null_rows"] == {"train": 1, "test": 0} and s.report["unknown_labels"]["test"] == 0
    assert s.report["sizes"]["test"] == 10


@pytest.mark.parametrize("value, expected", [
    (" sport ", "sport"), ("Sport", "Sport"), ("001", "001"), ("NA", "NA"), ("None", "None"), (3, "3"),
    (np.int64(7), "7"), (1.0, "1"), (np.float32(2.0), "2"), (1.5, "1.5"), ("", None), ("  ", None), (None, None),
    (float("nan"), None),
])
def test_normalize_label(value, expected):
    assert normalize_label(value) == expected


def test_normalize_label_refuses_a_list():
    with pytest.raises(TypeError, match="one value"):
        normalize_label(["a", "b"])


# ----------------------------------------------------------------------------------------------- losses, warnings
def test_the_dropped_share_is_allowed_up_to_the_limit_and_refused_beyond(tmp_path):
    limit = int(MAX_DROPPED_SHARE * 40)
    at_limit = [(t, "" if i < limit else y) for i, (t, y) in enumerate(rows_of(40))]
    assert splits(write_csv(tmp_path / "ok.csv", at_limit)).report["null_rows"] == {"train": limit}
    beyond = [(t, "" if i <= limit else y) for i, (t, y) in enumerate(rows_of(40))]
    with pytest.raises(UserError, match=rf"split 'train' loses {limit + 1} of its 40 rows"):
        splits(write_csv(tmp_path / "bad.csv", beyond))


def test_a_few_unknown_test_labels_are_one_warning_naming_them(tmp_path, caplog):
    test = rows_of(19, start=100) + [("match goal team tennis", "tennis")]
    data = f"train={write_csv(tmp_path / 'train.csv', rows_of(40))},test={write_csv(tmp_path / 'test.csv', test)}"
    with caplog.at_level(logging.WARNING, logger="adapters_kit.data.splits"):
        s = splits(data)
    assert s.report["unknown_labels"]["test"] == 1 and s.report["sizes"]["test"] == 19
    assert [r.getMessage() for r in caplog.records if r.name == "adapters_kit.data.splits"] == [
        "test: 1 row(s) with labels the training split never had ('tennis') are left out, not scored"]


def test_a_class_too_rare_to_stratify_the_carved_validation_split_is_one_warning(tmp_path, caplog):
    rows = rows_of(40) + [("match goal team rare", "rare")]
    with caplog.at_level(logging.WARNING, logger="adapters_kit.data.splits"):
        s = splits(write_csv(tmp_path / "d.csv", rows))
    assert s.labels.names == ("business", "rare", "sport")
    messages = [r.getMessage() for r in caplog.records if r.name == "adapters_kit.data.splits"]
    assert len(messages) == 1 and "the validation split carved from train is drawn at random" in messages[0]
    assert "class(es) 'rare' have fewer than 2 rows" in messages[0]


def test_evaluation_labels_refuse_a_test_split_the_run_cannot_score(tmp_path):
    data = (f"train={write_csv(tmp_path / 'train.csv', rows_of(40))},"
            f"test={write_csv(tmp_path / 'test.csv', rows_of(10, ('tennis',), 100))}")
    with pytest.raises(UserError, match=r"split 'test' is empty after cleaning: all its 10 row\(s\) were dropped "
                                        r"\(10 with labels the run never had \('tennis'\)\)"):
        load_splits(TrainConfig(data=data), TEXT, labels=LabelMap(("business", "sport")))


def test_a_dataset_split_shipped_without_labels_is_left_out_with_a_note(monkeypatch, caplog):
    """ClassLabel -1 on every row (GLUE's test sets): not the user's mistake, so not the empty-split error."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    import adapters_kit.data.splits as data

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    train = rows_of(40, (0, 1))
    raw = DatasetDict({"train": Dataset.from_dict({"text": [t for t, _ in train], "label": [y for _, y in train]},
                                                  features=features),
                       "test": Dataset.from_dict({"text": ["a b", "c d", "e f"], "label": [-1, -1, -1]},
                                                 features=features)})
    monkeypatch.setattr(data, "load_raw", lambda spec, lone="train": raw)
    with caplog.at_level(logging.WARNING, logger="adapters_kit.data.splits"):
        s = splits("some/hub-dataset")
    assert set(s.datasets) == {"train", "validation"} and s.labels.names == ("neg", "pos")
    assert [r.getMessage() for r in caplog.records if r.name == "adapters_kit.data.splits"] == [
        "split 'test' has no labels (all 3 rows are -1, the mark of an unlabelled split); it is left out"]


@pytest.mark.parametrize("classes, per_class, looks_like_text", [
    (25, 1, True),    # 25 values in 25 rows: free text or ids
    (30, 2, False),   # 30 classes of 2 rows: at the limit of half the rows, still classes
    (20, 1, False),   # tiny data: no more than FREE_TEXT_MIN_VALUES values never trips it
    (2, 20, False),
])
def test_free_text_in_the_label_column_is_refused(tmp_path, classes, per_class, looks_like_text):
    rows = rows_of(classes * per_class, tuple(f"class{c}" for c in range(classes)))
    path = write_csv(tmp_path / "d.csv", rows)
    if looks_like_text:
        with pytest.raises(UserError, match=f"has {classes} different values in {classes * per_class} training rows"):
            splits(path)
    else:
        assert len(splits(path).labels) == classes


# ----------------------------------------------------------------------------------------------- the byte scan
def test_the_utf8_scan_finds_the_line_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "SCAN_CHUNK", 5)  # every multi-byte character sooner or later cut in two
    good = "".join(f"caf\u00e9 \u20ac {i} \U0001f600\n" for i in range(20)).encode()
    (tmp_path / "good.csv").write_bytes(good)
    data_files.check_utf8(str(tmp_path / "good.csv"))
    bad = good + b"x\n" + b"ok,caf\xe9\n"
    (tmp_path / "bad.csv").write_bytes(bad)
    with pytest.raises(UserError, match=r"\(line 22: byte 0xe9\)"):
        data_files.check_utf8(str(tmp_path / "bad.csv"))
    (tmp_path / "cut.csv").write_bytes(good + "\u20ac".encode()[:2])  # a character cut by the end of the file
    with pytest.raises(UserError, match=r"\(line 21: byte 0xe2\)"):
        data_files.check_utf8(str(tmp_path / "cut.csv"))


def test_a_syntax_error_in_a_json_document_names_its_line(tmp_path):
    doc = json.dumps([{"text": t, "label": y} for t, y in rows_of(4)], indent=1).splitlines()
    assert doc[2].startswith('  "text"') and doc[3].startswith('  "label"')
    doc[2] = doc[2].rstrip(",")  # no comma between the first record's "text" and "label"
    (tmp_path / "d.json").write_text("\n".join(doc))
    with pytest.raises(UserError, match=r"is not valid JSON \(line 4: Expecting ',' delimiter\)"):
        splits(str(tmp_path / "d.json"))
