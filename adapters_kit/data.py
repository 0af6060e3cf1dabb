"""Config becomes data: load splits, find columns, build the label map, dedupe, split, preprocess, batch.

``load_splits`` returns a :class:`Splits` whose datasets have exactly two columns, ``input`` and ``label``
(an int id into ``Splits.labels``). ``prepare`` runs the modality's preprocessing; ``make_loaders`` batches.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import ClassLabel, Dataset, DatasetDict, load_dataset
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

from adapters_kit.catalog import DATASETS
from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError

log = logging.getLogger(__name__)

SPLIT_SEED = 1234
"""Carved splits use this fixed seed, not the training seed, so a data set is always split the same way."""
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "y", "topic", "intent", "sentiment")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation", "eval": "validation"}
FILE_BUILDERS = {".csv": ("csv", {}), ".tsv": ("csv", {"sep": "\t"}), ".tab": ("csv", {"sep": "\t"}),
                 ".json": ("json", {}), ".jsonl": ("json", {}), ".parquet": ("parquet", {})}


@dataclass(frozen=True)
class LabelMap:
    """Class names in id order; ``id2label``/``label2id`` as transformers configs spell them."""

    names: tuple[str, ...]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Splits:
    """Clean splits (columns ``input``, ``label``), the label map, and what cleaning did (for the user)."""

    datasets: DatasetDict
    labels: LabelMap
    input_column: str
    label_column: str
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- raw loading
def _load_file(path: str, split: str) -> Dataset:
    if not os.path.exists(path):
        raise UserError(f"data file {path} does not exist; check the path")
    if os.path.isdir(path):
        raise UserError(f"{split}={path} is a folder; give a file (CSV, TSV, JSON, JSONL or Parquet)")
    if os.path.getsize(path) == 0:
        raise UserError(f"data file {path} is empty; give a file with a header row and data rows")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_BUILDERS:
        raise UserError(f"cannot read {path}: unknown extension {ext!r}; use one of {', '.join(FILE_BUILDERS)}")
    builder, kwargs = FILE_BUILDERS[ext]
    try:
        ds = load_dataset(builder, data_files={split: os.path.abspath(path)}, split=split, **kwargs)
    except Exception as e:  # datasets wraps parser errors in many types; all mean "unreadable"
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        if "corresponds to no data" in reason:  # datasets' words for a file with a header and no rows
            raise UserError(f"data file {path} has no rows; give a file with data rows") from None
        raise UserError(f"cannot read {path} as {builder.upper()} ({reason[:200]}); check the file format") from None
    if len(ds) == 0:
        raise UserError(f"data file {path} has no rows; give a file with data rows")
    return ds


def _parse_files(spec: str) -> dict[str, str]:
    files = {}
    for part in spec.split(","):
        split, sep, path = part.partition("=")
        if not sep or not split.strip() or not path.strip():
            raise UserError(f"bad --data part {part!r}: write files as train=a.csv,test=b.csv")
        files[SPLIT_ALIASES.get(split.strip(), split.strip())] = path.strip()
    if "train" not in files:
        raise UserError(f"--data {spec!r} names no train file; add train=PATH")
    return files


def load_raw(spec: str) -> DatasetDict:
    """Any data spec -> DatasetDict of raw splits (validation aliases normalised)."""
    if spec in DATASETS:
        frames = DATASETS[spec].load()
        return DatasetDict({s: Dataset.from_pandas(df, preserve_index=False) for s, df in frames.items()})
    if "=" in spec:
        return DatasetDict({s: _load_file(p, s) for s, p in _parse_files(spec).items()})
    if os.path.isfile(spec):
        return DatasetDict({"train": _load_file(spec, "train")})
    try:
        raw = load_dataset(spec)
    except Exception as e:
        known = ", ".join(DATASETS)
        raise UserError(f"cannot load data {spec!r}: not a built-in ({known}), a file, or a dataset that "
                        f"load_dataset can open offline ({type(e).__name__}); check the name or path") from None
    raw = DatasetDict({SPLIT_ALIASES.get(k, k): v for k, v in raw.items()})
    if "train" not in raw:
        raise UserError(f"data {spec!r} has no train split (found: {', '.join(raw)}); provide one")
    return raw


def load_inputs(spec: str, input_candidates: tuple[str, ...], column: str | None = None) -> Dataset:
    """Unlabelled inputs (DANN's target domain): the train split of a data spec, only its input column (column
    ``input``); a label column, if there is one, is never read. Empty values are dropped."""
    train = load_raw(spec)["train"]
    col = find_column(list(train.column_names), column, input_candidates, "text", "--text-column")
    values = [v for v in train[col] if v is not None and v == v and (not isinstance(v, str) or v.strip())]
    if not values:
        raise UserError(f"{spec} holds no inputs in column {col!r}; give a file with data rows")
    return Dataset.from_dict({"input": values})


# --------------------------------------------------------------------------------------------- columns, labels
def find_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, flag: str,
                exclude: str | None = None) -> str:
    """The column the user named, or the first common name present (case-insensitive), never ``exclude``."""
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{what} column {wanted!r} not found; columns are: {', '.join(columns)}")
        return wanted
    lower = {c.lower(): c for c in columns if c != exclude}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    raise UserError(f"no {what} column found among: {', '.join(columns)}; name it with {flag}")


def _label_names(train: Dataset, column: str) -> tuple[str, ...]:
    feature = train.features[column]
    if isinstance(feature, ClassLabel):
        return tuple(feature.names)
    values = pd.unique(pd.Series(train[column]).dropna())
    numeric = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    return tuple(str(v) for v in sorted(values, key=int if numeric else str))


def _as_names(ds: Dataset, column: str) -> list[str | None]:
    feature = ds.features[column]
    if isinstance(feature, ClassLabel):
        return [feature.names[v] if v is not None and v >= 0 else None for v in ds[column]]
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in ds[column]]


# --------------------------------------------------------------------------------------------- splitting
def _stratified(idx: np.ndarray, y: np.ndarray, size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) index arrays; falls back to a plain random split when a class is too rare."""
    try:
        return tuple(train_test_split(idx, test_size=size, stratify=y, random_state=seed))
    except ValueError:
        log.warning("a class is too rare to stratify; splitting at random instead")
        return tuple(train_test_split(idx, test_size=size, random_state=seed))


def _dedupe(frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Drop exact duplicate inputs within each split and train/validation texts that also occur in a later split."""
    dropped = {}
    seen: set = set()
    for split in [s for s in ("test", "validation") if s in frames] + [s for s in frames if s not in
                                                                          ("test", "validation")]:
        df = frames[split]
        keep = ~df["input"].duplicated() & ~df["input"].isin(seen)
        dropped[split] = int((~keep).sum())
        frames[split] = df[keep]
        seen.update(frames[split]["input"])
    return dropped


def _carve(frames: dict[str, pd.DataFrame], name: str, size: float, seed: int) -> None:
    train = frames["train"]
    rest, held = _stratified(np.arange(len(train)), train["label"].to_numpy(), size, seed)
    frames[name], frames["train"] = train.iloc[np.sort(held)], train.iloc[np.sort(rest)]


def load_splits(cfg: TrainConfig, input_candidates: tuple[str, ...], labels: LabelMap | None = None) -> Splits:
    """Load ``cfg.data`` into clean train/validation/test splits.

    ``labels`` fixes the label map (evaluation of a saved run); otherwise it is read off the training split.
    """
    raw = load_raw(cfg.data)
    columns = list(raw["train"].column_names)
    in_col = find_column(columns, cfg.text_column, input_candidates, "text", "--text-column")
    lab_col = find_column(columns, cfg.label_column, LABEL_COLUMNS, "label", "--label-column", exclude=in_col)
    names = labels.names if labels is not None else _label_names(raw["train"], lab_col)
    if labels is None and len(names) < 2:
        raise UserError(f"label column {lab_col!r} has only one class ({', '.join(names) or 'none'}); "
                        f"classification needs at least two")
    label_map = LabelMap(tuple(names))
    report: dict[str, Any] = {"null_rows": {}, "unknown_labels": {}}
    frames = {}
    for split, ds in raw.items():
        if in_col not in ds.column_names or lab_col not in ds.column_names:
            raise UserError(f"split {split!r} lacks column {in_col!r} or {lab_col!r}; columns are: "
                            f"{', '.join(ds.column_names)}")
        df = pd.DataFrame({"input": ds[in_col], "label": _as_names(ds, lab_col)})
        null = df["input"].isna() | df["label"].isna()
        report["null_rows"][split] = int(null.sum())
        df = df[~null]
        known = df["label"].isin(label_map.label2id)
        report["unknown_labels"][split] = int((~known).sum())
        frames[split] = df[known].assign(label=lambda d: d["label"].map(label_map.label2id).astype("int64"))
    report["duplicates_dropped"] = _dedupe(frames)
    builtin_without_test = cfg.data in DATASETS and "test" not in frames
    if builtin_without_test:
        _carve(frames, "test", 0.1, SPLIT_SEED)
    if "validation" not in frames:
        _carve(frames, "validation", cfg.val_fraction / (0.9 if builtin_without_test else 1.0), SPLIT_SEED)
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(frames["train"]):
        train = frames["train"]
        _, keep = _stratified(np.arange(len(train)), train["label"].to_numpy(), cfg.max_train_samples, cfg.seed)
        frames["train"] = train.iloc[np.sort(keep)]
    if frames["train"]["label"].nunique() < 2:
        raise UserError("the training split has fewer than two classes after cleaning; check the label column")
    order = [s for s in ("train", "validation", "test") if s in frames] + sorted(set(frames) - {"train",
                                                                                             "validation", "test"})
    dsd = DatasetDict({s: Dataset.from_pandas(frames[s].reset_index(drop=True), preserve_index=False)
                       for s in order})
    report["sizes"] = {s: len(d) for s, d in dsd.items()}
    return Splits(dsd, label_map, in_col, lab_col, report)


# --------------------------------------------------------------------------------------------- batches
def prepare(datasets: DatasetDict | Dataset, modality: Any, processor: Any, max_length: int) -> DatasetDict | Dataset:
    """Run the modality's preprocessing on a split or all splits; keeps ``label``, drops the raw input."""
    def fn(batch):
        return modality.preprocess(processor, batch, "input", max_length)

    return datasets.map(fn, batched=True, remove_columns=["input"], desc="preprocess")


def make_loader(ds: Dataset, collator: Any, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Training loaders shuffle with a seeded generator; evaluation loaders keep order."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collator,
                      generator=generator)
