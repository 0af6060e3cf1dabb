"""Config becomes data: load splits, find columns, build the label map, dedupe, split, preprocess, batch.

``load_splits`` returns a :class:`Splits` whose datasets have exactly two columns, ``input`` and ``label``
(an int id into ``Splits.labels``). ``prepare`` runs the modality's preprocessing; ``make_loaders`` batches.
"""

from __future__ import annotations

import hashlib
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

from adapters_kit import media
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
    kind: str | None = None
    """What the data holds when it says so itself (a folder of images, audio or text files, a built-in):
    ``image``, ``audio``, ``text``; ``None`` for tables, whose input column could be either."""

    def split(self, name: str, data: str) -> Dataset:
        """The split ``name``, or a UserError naming the splits ``data`` (the spec it was read from) has."""
        if name not in self.datasets:
            raise UserError(f"data {data!r} has no split {name!r}; splits are: {', '.join(self.datasets)}")
        return self.datasets[name]


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


def _folder_kind(files: list[str], root: str) -> str:
    exts = [os.path.splitext(f)[1].lower() for f in files]
    counts = {kind: sum(e in extensions for e in exts) for kind, extensions in
              (("image", media.IMAGE_EXTENSIONS), ("audio", media.AUDIO_EXTENSIONS), ("text", media.TEXT_EXTENSIONS))}
    kind = max(counts, key=counts.get)
    if counts[kind] == 0:
        raise UserError(f"{root} holds no image, audio or .txt files in class folders; lay it out as "
                        f"[train/]<class>/<file> (ImageFolder / AudioFolder)")
    return kind


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def is_class_folder(spec: str) -> bool:
    """A folder of sub-folders (ImageFolder / AudioFolder style), not one of data files or a saved dataset."""
    if not os.path.isdir(spec) or any(os.path.exists(os.path.join(spec, f)) for f in ("dataset_dict.json",
                                                                                     "dataset_info.json")):
        return False
    return any(os.path.isdir(os.path.join(spec, d)) and not d.startswith(".") for d in os.listdir(spec))


def load_folder(root: str) -> tuple[DatasetDict, str]:
    """An ImageFolder / AudioFolder layout: ``train/<class>/*`` (and ``test/``, ``validation/``), or just
    ``<class>/*`` (all training data). Columns: ``label`` and the kind of file (``image`` / ``audio``: absolute
    paths; ``text``: the file contents); returns the splits and that kind."""
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    named = {SPLIT_ALIASES.get(d, d): d for d in subdirs if SPLIT_ALIASES.get(d, d) in ("train", "validation", "test")}
    split_dirs = {s: os.path.join(root, d) for s, d in named.items()} if "train" in named else {"train": root}
    found = {}
    for split, folder in split_dirs.items():
        rows = []
        for label in sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))
                            and not d.startswith(".")):
            for dirpath, _, names in sorted(os.walk(os.path.join(folder, label))):
                rows += [(os.path.abspath(os.path.join(dirpath, n)), label) for n in sorted(names)
                         if not n.startswith(".")]
        found[split] = rows
    kind = _folder_kind([p for rows in found.values() for p, _ in rows], root)
    extensions = {"image": media.IMAGE_EXTENSIONS, "audio": media.AUDIO_EXTENSIONS, "text": media.TEXT_EXTENSIONS}[kind]
    out = {}
    for split, rows in found.items():
        rows = [(p, lab) for p, lab in rows if os.path.splitext(p)[1].lower() in extensions]
        if not rows:
            raise UserError(f"split folder {split_dirs[split]} holds no {kind} files in class folders")
        inputs = [_read_text(p) if kind == "text" else p for p, _ in rows]
        out[split] = Dataset.from_dict({kind: inputs, "label": [lab for _, lab in rows]})
    return DatasetDict(out), kind


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
    if is_class_folder(spec):
        return load_folder(spec)[0]
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


def data_kind(spec: str) -> str | None:
    """What a data spec holds when it says so itself (folders, built-ins), else ``None``."""
    if spec in DATASETS:
        return DATASETS[spec].modality
    if is_class_folder(spec):
        return load_folder(spec)[1]
    return None


def _base_dirs(spec: str) -> dict[str, str]:
    """The folder each split's relative file paths are relative to: its data file's folder."""
    if "=" in spec and spec not in DATASETS:
        return {s: os.path.dirname(os.path.abspath(p)) for s, p in _parse_files(spec).items()}
    if os.path.isfile(spec):
        return {"train": os.path.dirname(os.path.abspath(spec))}
    return {}


def _absolute(values: list, base: str) -> list:
    return [v if not isinstance(v, str) or os.path.isabs(v) else os.path.normpath(os.path.join(base, v))
            for v in values]


def load_inputs(spec: str, modality: Any, column: str | None = None) -> Dataset:
    """Unlabelled inputs (DANN's target domain): the train split of a data spec, only its input column (column
    ``input``); a label column, if there is one, is never read. Empty values are dropped."""
    train = load_raw(spec)["train"]
    col = find_column(list(train.column_names), column, modality.input_columns, _what(modality), "--text-column")
    values = [v for v in train[col] if v is not None and v == v and (not isinstance(v, str) or v.strip())]
    if modality.reads_files:
        values = _absolute(values, _base_dirs(spec).get("train", os.getcwd()))
    if not values:
        raise UserError(f"{spec} holds no inputs in column {col!r}; give a file with data rows")
    return Dataset.from_dict({"input": values})


# --------------------------------------------------------------------------------------------- columns, labels
def _what(modality: Any) -> str:
    return "text" if modality.name == "text" else f"{modality.name} path"


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


def _subset(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A stratified ``size``-row subset of ``frame`` in its own order; the frame itself when it is no larger."""
    if size is None or size >= len(frame):
        return frame
    _, keep = _stratified(np.arange(len(frame)), frame["label"].to_numpy(), size, seed)
    return frame.iloc[np.sort(keep)]


def _content_hash(path: Any) -> Any:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha1(fh.read()).hexdigest()
    except (OSError, TypeError):
        return path  # unreadable: left for the modality's check to report


def _dedupe(frames: dict[str, pd.DataFrame], files: bool = False) -> dict[str, int]:
    """Drop exact duplicate inputs within each split and train/validation inputs that also occur in a later
    split (for files: identical file contents, wherever they are)."""
    dropped = {}
    seen: set = set()
    for split in [s for s in ("test", "validation") if s in frames] + [s for s in frames if s not in
                                                                          ("test", "validation")]:
        df = frames[split]
        key = df["input"].map(_content_hash) if files else df["input"]
        keep = ~key.duplicated() & ~key.isin(seen)
        dropped[split] = int((~keep).sum())
        frames[split] = df[keep]
        seen.update(key[keep])
    return dropped


def _carve(frames: dict[str, pd.DataFrame], name: str, size: float, seed: int) -> None:
    train = frames["train"]
    rest, held = _stratified(np.arange(len(train)), train["label"].to_numpy(), size, seed)
    frames[name], frames["train"] = train.iloc[np.sort(held)], train.iloc[np.sort(rest)]


def load_splits(cfg: TrainConfig, modality: Any, labels: LabelMap | None = None) -> Splits:
    """Load ``cfg.data`` into clean train/validation/test splits of ``modality``'s inputs.

    ``labels`` fixes the label map (evaluation of a saved run); otherwise it is read off the training split.
    File paths in a table are taken relative to that table's folder.
    """
    kind = data_kind(cfg.data)
    if kind is not None and kind != modality.name:
        raise UserError(f"data {cfg.data!r} holds {kind} but model {cfg.model!r} takes {modality.name}; "
                        f"choose a {kind} backbone or {modality.name} data")
    raw = load_raw(cfg.data)
    columns = list(raw["train"].column_names)
    in_col = find_column(columns, cfg.text_column, modality.input_columns, _what(modality), "--text-column")
    lab_col = find_column(columns, cfg.label_column, LABEL_COLUMNS, "label", "--label-column", exclude=in_col)
    names = labels.names if labels is not None else _label_names(raw["train"], lab_col)
    if labels is None and len(names) < 2:
        raise UserError(f"label column {lab_col!r} has only one class ({', '.join(names) or 'none'}); "
                        f"classification needs at least two")
    label_map = LabelMap(tuple(names))
    report: dict[str, Any] = {"null_rows": {}, "unknown_labels": {}}
    frames = {}
    bases = _base_dirs(cfg.data)
    for split, ds in raw.items():
        if in_col not in ds.column_names or lab_col not in ds.column_names:
            raise UserError(f"split {split!r} lacks column {in_col!r} or {lab_col!r}; columns are: "
                            f"{', '.join(ds.column_names)}")
        inputs = _absolute(ds[in_col], bases.get(split, os.getcwd())) if modality.reads_files else ds[in_col]
        df = pd.DataFrame({"input": inputs, "label": _as_names(ds, lab_col)})
        null = df["input"].isna() | df["label"].isna()
        report["null_rows"][split] = int(null.sum())
        df = df[~null]
        known = df["label"].isin(label_map.label2id)
        report["unknown_labels"][split] = int((~known).sum())
        frames[split] = df[known].assign(label=lambda d: d["label"].map(label_map.label2id).astype("int64"))
    report["duplicates_dropped"] = _dedupe(frames, files=modality.reads_files)
    if len(frames["train"]) < 2:
        raise UserError(f"the training split holds {len(frames['train'])} usable example(s) after dropping empty rows, "
                        f"unknown labels and duplicates (of it or of the test/validation data); give more data")
    # Data that names its own kind (built-ins, class folders) gets a test split carved when it has none.
    builtin_without_test = kind is not None and "test" not in frames
    if builtin_without_test:
        _carve(frames, "test", 0.1, SPLIT_SEED)
    if "validation" not in frames:
        _carve(frames, "validation", cfg.val_fraction / (0.9 if builtin_without_test else 1.0), SPLIT_SEED)
    for split in frames:  # held-out subsets are drawn with the split seed: the same ones whatever the run's seed
        limit, seed = (cfg.max_train_samples, cfg.seed) if split == "train" else (cfg.max_eval_samples, SPLIT_SEED)
        frames[split] = _subset(frames[split], limit, seed)
    if frames["train"]["label"].nunique() < 2:
        raise UserError("the training split has fewer than two classes after cleaning; check the label column")
    order = [s for s in ("train", "validation", "test") if s in frames] + sorted(set(frames) - {"train",
                                                                                             "validation", "test"})
    dsd = DatasetDict({s: Dataset.from_pandas(frames[s].reset_index(drop=True), preserve_index=False)
                       for s in order})
    report["sizes"] = {s: len(d) for s, d in dsd.items()}
    return Splits(dsd, label_map, in_col, lab_col, report, kind)


# --------------------------------------------------------------------------------------------- batches
def prepare(datasets: DatasetDict | Dataset, modality: Any, processor: Any,
            train: bool = False) -> DatasetDict | Dataset:
    """The modality's preprocessing of one split or of all splits (``train`` split augmented, if the modality
    does); keeps ``label`` (and any other column), replaces the raw input by model inputs."""
    if isinstance(datasets, Dataset):
        return modality.prepare(datasets, processor, "train" if train else "data", train)
    return DatasetDict({s: modality.prepare(ds, processor, s, s == "train") for s, ds in datasets.items()})


GROUP_SIZE = 1024
"""Examples per length group: a shuffled group is ordered by length, so neighbouring batches hold similar lengths."""


class LengthGroupedSampler(torch.utils.data.Sampler):
    """A random permutation (the same one ``RandomSampler`` draws from this generator), cut into groups of
    ``GROUP_SIZE`` examples, each ordered by length, longest first (a stable sort: equal lengths keep their random
    order). Batches cut from it hold similar lengths, so dynamic padding wastes little, while every epoch still
    mixes the data. The group size counts examples, not batches, so one process at batch 8 and two at batch 4 see
    the same global batches."""

    def __init__(self, lengths: list[int], generator: torch.Generator):
        self.lengths, self.generator = lengths, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        for start in range(0, len(order), GROUP_SIZE):
            yield from sorted(order[start:start + GROUP_SIZE], key=lambda i: -self.lengths[i])


class LongestFirstSampler(torch.utils.data.Sampler):
    """Every index once, longest first (a stable sort: equal lengths keep the split's order), for evaluation:
    batches of similar lengths waste little on padding, and metrics do not depend on the order (per-example outputs
    such as the mistakes list carry their dataset index)."""

    def __init__(self, lengths: list[int]):
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)


def make_loader(ds: Dataset, collator: Any, batch_size: int, shuffle: bool, seed: int = 0,
                group_by_length: bool = False) -> DataLoader:
    """Training loaders shuffle with a seeded generator; evaluation loaders do not. With ``group_by_length`` and
    token ids, training batches come from :class:`LengthGroupedSampler` and evaluation batches longest first
    (:class:`LongestFirstSampler`); without, evaluation keeps the split's order."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    if group_by_length and "input_ids" in ds.column_names:
        lengths = [len(ids) for ids in ds["input_ids"]]
        sampler = LengthGroupedSampler(lengths, generator) if shuffle else LongestFirstSampler(lengths)
        loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collator)
        loader.generator = generator  # where the training loop reseeds each epoch's shuffle (None: evaluation)
        return loader
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collator,
                      generator=generator)
