"""The data every side of the benchmark reads: one set of split files per data set, written before any side runs.

Every side (the transformers ``Trainer`` ones, adapters_kit's, the hand-written probe) reads the same Parquet files,
so the examples, their cleaning and their split are the same by construction. The rules are the ones adapters_kit
applies to data it loads (docs/concepts.md, "data rules"), so a built-in data set splits here as it does in
``adapters-kit train``:

- inputs or labels that are blank are dropped; labels lose surrounding whitespace; a held-out row whose label the
  training split lacks is dropped;
- exact duplicate inputs are dropped within each split, and from validation and train when a later split (test,
  then validation) holds them;
- a built-in data set without a test split gets a stratified 10% test split, and data without a validation split
  a stratified one of ``VAL_FRACTION`` of the whole, both drawn with ``SPLIT_SEED``;
- ``max_train_samples`` draws a stratified subset of train with the run's seed, ``max_eval_samples`` one of each
  held-out split with ``SPLIT_SEED``.

adapters_kit, reading these files, finds nothing left to drop or carve; its side checks that it trained and scored
on exactly the sizes written here.

A data spec is a built-in name (``adapters_kit.DATASETS``), ``train=a.csv,test=b.csv`` (``.csv``, ``.tsv``,
``.jsonl``, ``.parquet``; a ``text`` and a ``label`` column) or one such file (the training data).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

import adapters_kit

SPLIT_SEED = 1234
"""The seed of carved splits and held-out subsets, whatever the run's seed (adapters_kit's own)."""
VAL_FRACTION = adapters_kit.TrainConfig().val_fraction
ALIASES = {"valid": "validation", "val": "validation", "dev": "validation", "eval": "validation"}
HELD_OUT = ("test", "validation")
"""In the order duplicates are resolved: a later split keeps an input that an earlier one also holds."""


def _read_file(path: str) -> pd.DataFrame:
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(path)
    elif suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    else:  # cells as written: "NA" or "001" stay strings
        df = pd.read_csv(path, sep="\t" if suffix in (".tsv", ".tab") else ",", dtype=str, keep_default_na=False)
    return df[["text", "label"]]


def read_raw(spec: str) -> tuple[dict[str, pd.DataFrame], bool]:
    """(split -> frame of ``text`` and ``label``, whether the data is a built-in one)."""
    if spec in adapters_kit.DATASETS:
        return {s: df[["text", "label"]] for s, df in adapters_kit.DATASETS[spec].load().items()}, True
    if "=" not in spec:
        return {"train": _read_file(spec)}, False
    parts = dict(part.split("=", 1) for part in spec.split(",") if part.strip())
    return {ALIASES.get(s.strip(), s.strip()): _read_file(p.strip()) for s, p in parts.items()}, False


def label_names(labels) -> list[str]:
    """adapters_kit's label order: by integer value when every name is an integer literal, else by string."""
    names = sorted(set(labels))
    return sorted(names, key=int) if all(re.fullmatch(r"[+-]?\d+", n) for n in names) else names


def _clean(frames: dict[str, pd.DataFrame]) -> None:
    for split, df in frames.items():
        text, label = df["text"], df["label"].map(lambda v: None if v is None or pd.isna(v) else str(v).strip())
        keep = text.map(lambda t: isinstance(t, str) and bool(t.strip())) & label.map(bool)
        frames[split] = pd.DataFrame({"text": text[keep], "label": label[keep]})
    known = set(frames["train"]["label"])
    for split in [s for s in frames if s != "train"]:
        frames[split] = frames[split][frames[split]["label"].isin(known)]


def _dedupe(frames: dict[str, pd.DataFrame]) -> None:
    seen: set[str] = set()
    for split in [s for s in HELD_OUT if s in frames] + [s for s in frames if s not in HELD_OUT]:
        df = frames[split]
        keep = ~df["text"].duplicated() & ~df["text"].isin(seen)
        frames[split] = df[keep]
        seen.update(df["text"][keep])


def _stratified(df: pd.DataFrame, size: float | int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held out), stratified by label where every class has two rows and the held-out part fits them all."""
    idx, y = np.arange(len(df)), df["label"].to_numpy()
    stratify = y if np.unique(y, return_counts=True)[1].min() >= 2 else None
    try:
        rest, held = train_test_split(idx, test_size=size, stratify=stratify, random_state=seed)
    except ValueError:  # a held-out part smaller than the number of classes
        rest, held = train_test_split(idx, test_size=size, random_state=seed)
    return df.iloc[np.sort(rest)], df.iloc[np.sort(held)]


def make_splits(spec: str, seed: int, max_train_samples: int | None = None, max_eval_samples: int | None = None,
                keep: tuple[str, ...] = ("train", "validation", "test")) -> dict[str, pd.DataFrame]:
    """The clean splits of ``spec`` (see the module docstring), only those named in ``keep``."""
    frames, builtin = read_raw(spec)
    _clean(frames)
    _dedupe(frames)
    carve_test = builtin and "test" not in frames
    if carve_test:
        frames["train"], frames["test"] = _stratified(frames["train"], 0.1, SPLIT_SEED)
    if "validation" not in frames:
        frames["train"], frames["validation"] = _stratified(frames["train"], VAL_FRACTION / (0.9 if carve_test
                                                                                               else 1.0), SPLIT_SEED)
    for split, df in frames.items():
        limit, draw_seed = (max_train_samples, seed) if split == "train" else (max_eval_samples, SPLIT_SEED)
        if limit is not None and limit < len(df):
            frames[split] = _stratified(df, limit, draw_seed)[1]
    return {s: frames[s].reset_index(drop=True) for s in keep if s in frames}


def write_splits(spec: str, folder: str | Path, seed: int, max_train_samples: int | None = None,
                 max_eval_samples: int | None = None, keep: tuple[str, ...] = ("train", "validation", "test"),
                 ) -> dict[str, Any]:
    """Write the splits as ``folder/<split>.parquet``; returns what a side needs to read them: ``files``, ``data``
    (the same files as an adapters_kit data spec), ``labels`` (in adapters_kit's order) and ``sizes``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = make_splits(spec, seed, max_train_samples, max_eval_samples, keep)
    files = {}
    for split, df in frames.items():
        files[split] = str(folder / f"{split}.parquet")
        df.to_parquet(files[split], index=False)
    manifest = {"source": spec, "files": files, "data": ",".join(f"{s}={p}" for s, p in files.items()),
                "labels": label_names(frames["train"]["label"]), "sizes": {s: len(df) for s, df in frames.items()}}
    (folder / "splits.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def read_split(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)
