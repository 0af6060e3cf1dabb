"""Config becomes data: find columns, read labels, build the label map, clean, dedupe, split, preprocess, batch.

``load_splits`` returns a :class:`Splits` whose datasets have exactly two columns, ``input`` and ``label``
(an int id into ``Splits.labels``). ``prepare`` runs the modality's preprocessing; ``make_loaders`` batches.
Specs and files become raw splits in :mod:`adapters_kit.data.files` (which names a broken file's line).

Labels are text, normalised one way wherever they are read (training split, held-out splits, and through
:func:`normalize_label` a saved run's ``labels.json``): surrounding whitespace is stripped, the rest kept verbatim
(``"sport "`` is ``"sport"``, ``"Sport"`` another class; ``"001"``, ``"NA"``, ``"None"`` stay as written); an
empty or blank cell is a missing label. Typed values (JSON, Parquet, built-ins) are written with ``str``
(``3`` -> ``"3"``), but a float holding an integer as that integer (``1.0`` -> ``"1"``): pandas stores an integer
column with a gap as floats, and one class must not get two names in two files. Classes are ordered by integer
value when every name is an integer literal (``001, 002, 010``), else by string; a ClassLabel keeps its order.

Cleaning drops, and counts in ``Splits.report``, rows with a missing or blank input or label, rows whose label the
training split (or the saved run) never had, and duplicate inputs. A split left empty, or losing more than
``MAX_DROPPED_SHARE`` of its rows to missing or unknown labels, is an error; a smaller share of unknown labels,
and classes too rare to stratify a carved split, are one warning line each.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict
from sklearn.model_selection import train_test_split

from adapters_kit.config import TrainConfig

# Raw loading moved to data_files; its public names stay importable from here (``x as x``: a re-export).
from adapters_kit.data.files import FILE_BUILDERS as FILE_BUILDERS
from adapters_kit.data.files import SPLIT_ALIASES as SPLIT_ALIASES
from adapters_kit.data.files import (
    absolute_paths,
    base_dirs,
    check_one_per_row,
    data_kind,
    find_column,
    input_what,
    is_blank,
    load_raw,
    source_files,
)
from adapters_kit.data.files import is_class_folder as is_class_folder
from adapters_kit.data.files import load_folder as load_folder
from adapters_kit.data.files import load_inputs as load_inputs
from adapters_kit.data.loaders import GROUP_SIZE as GROUP_SIZE  # the loaders lived here; kept importable from here
from adapters_kit.data.loaders import LengthGroupedSampler as LengthGroupedSampler
from adapters_kit.data.loaders import LongestFirstSampler as LongestFirstSampler
from adapters_kit.data.loaders import make_loader as make_loader
from adapters_kit.errors import UserError

log = logging.getLogger(__name__)

SPLIT_SEED = 1234
"""Carved splits use this fixed seed, not the training seed, so a data set is always split the same way."""
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "y", "topic", "intent", "sentiment")
MAX_DROPPED_SHARE = 0.1
"""A split losing more than this share of its rows to missing inputs / labels or to labels the training split (or
the saved run) never had is an error, not a quiet drop: that much usually means a wrong column, a wrong file or
labels spelled differently. Duplicates are not counted (real corpora hold many)."""
STRATIFY_MIN_ROWS = 2
"""Rows a class needs for a stratified split to put one on each side; rarer classes make the split random."""
FREE_TEXT_MIN_VALUES = 20
"""A label column with more distinct values than this and than half the training rows (under two rows per class)
looks like free text or ids, as when --text-column and --label-column are swapped. Data with a handful of
classes never trips it, however few rows it has."""
_INTEGER = re.compile(r"[+-]?[0-9]+")


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


# --------------------------------------------------------------------------------------------- labels
def normalize_label(value: Any) -> str | None:
    """A label as the module docstring says: text, surrounding whitespace stripped; ``None`` when it is missing
    or blank. Raises TypeError for a list or a record, which is not one label.

    >>> normalize_label(" sport "), normalize_label(3), normalize_label(1.0), normalize_label("NA"), normalize_label("")
    ('sport', '3', '1', 'NA', None)
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        raise TypeError(f"a label is one value, not a {type(value).__name__}: {value!r:.60}")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if value.is_integer():  # 1.0 from a column pandas made float because of a gap is the class "1"
            value = int(value)
    return str(value).strip() or None


def sort_label_names(names: Iterable[str]) -> tuple[str, ...]:
    """Distinct class names in id order: by integer value when every one is an integer literal, else by string."""
    unique = set(names)
    if unique and all(_INTEGER.fullmatch(n) for n in unique):
        return tuple(sorted(unique, key=lambda n: (int(n), n)))
    return tuple(sorted(unique))


def _listed(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _read_split(ds: Dataset, in_col: str, lab_col: str, modality: Any, where: str,
                base: str) -> tuple[list, list[str | None]]:
    """A split's inputs (relative file paths made absolute against ``base``) and its labels, normalised.
    ``where`` names the split's source (its data file) in messages."""
    if in_col not in ds.column_names or lab_col not in ds.column_names:
        raise UserError(f"{where} lacks column {in_col!r} or {lab_col!r}; columns are: {', '.join(ds.column_names)}")
    check_one_per_row(ds, in_col, input_what(modality), where)
    check_one_per_row(ds, lab_col, "label", where)
    feature = ds.features[lab_col]
    if isinstance(feature, ClassLabel):
        labels = [normalize_label(feature.names[v]) if v is not None and v >= 0 else None for v in ds[lab_col]]
    else:
        labels = [normalize_label(v) for v in ds[lab_col]]
    return (absolute_paths(ds[in_col], base) if modality.reads_files else ds[in_col]), labels


def _label_map(values: list[str | None], feature: Any, column: str) -> LabelMap:
    """The classes of the training split's (normalised) labels, checked: two or more, and not free text."""
    if isinstance(feature, ClassLabel):
        names = tuple(dict.fromkeys(n for n in map(normalize_label, feature.names) if n is not None))
    else:
        present = [v for v in values if v is not None]
        names = sort_label_names(present)
        if len(names) > FREE_TEXT_MIN_VALUES and len(names) > len(present) / 2:
            raise UserError(f"label column {column!r} has {len(names)} different values in {len(present)} training "
                            f"rows, so it looks like free text or ids, not classes; check --label-column and "
                            f"--text-column")
    if len(names) < 2:
        raise UserError(f"label column {column!r} has only one class ({', '.join(names) or 'none'}); "
                        f"classification needs at least two")
    return LabelMap(names)


# --------------------------------------------------------------------------------------------- cleaning
def _clean(read: dict[str, tuple[list, list]], lookup: dict[str, int]) -> tuple[dict, dict, dict]:
    """Drop rows with a missing input or label, then rows whose label ``lookup`` lacks; labels become ids.
    Returns the frames, the counts (``rows``, ``null_rows``, ``unknown_labels`` per split) and each split's
    unknown label names, most frequent first."""
    frames, unknown_names = {}, {}
    report: dict[str, Any] = {"rows": {}, "null_rows": {}, "unknown_labels": {}}
    for split, (inputs, labels) in read.items():
        df = pd.DataFrame({"input": inputs, "label": labels})
        missing = df["input"].map(is_blank) | df["label"].isna()
        df = df[~missing]
        known = df["label"].isin(list(lookup))
        report["rows"][split], report["null_rows"][split] = len(missing), int(missing.sum())
        report["unknown_labels"][split] = int((~known).sum())
        unknown_names[split] = df.loc[~known, "label"].value_counts().index.tolist()
        frames[split] = df[known].assign(label=lambda d: d["label"].map(lookup).astype("int64"))
    return frames, report, unknown_names


def _drop_unlabelled(read: dict[str, tuple[list, list]], raw: DatasetDict, column: str) -> list[str]:
    """Leave out the held-out splits a dataset ships unlabelled (ClassLabel -1 on every row, as GLUE's test sets):
    no file of the user's is wrong there, so that is a note, not the empty-split error. Returns the notes."""
    notes = []
    for split in [s for s in read if s != "train" and isinstance(raw[s].features[column], ClassLabel)]:
        if all(v is None for v in read[split][1]):
            del read[split]
            notes.append(f"split {split!r} has no labels (all {raw[split].num_rows} rows are -1, the mark of an "
                         f"unlabelled split); it is left out")
    return notes


def _advice(missing: int, unknown: int, dups: int, names: tuple[str, ...], source: str) -> str:
    """What to do about a split's largest loss."""
    if unknown >= max(missing, dups):
        return f"check that its label column spells the classes as {source} does ({_listed(list(names))})"
    if missing >= dups:
        return "fill in or remove the rows with an empty input or label (or check --text-column / --label-column)"
    return "its inputs all repeat each other or the test/validation data; give it rows of its own"


def _check_losses(report: dict, unknown_names: dict[str, list[str]], names: tuple[str, ...],
                  source: str) -> list[str]:
    """Raise when a split is empty after cleaning or lost too many rows (``MAX_DROPPED_SHARE``); returns the
    warning lines for smaller losses to unknown labels. ``source``: whose classes count (the training split /
    the run)."""
    notes = []
    for split, rows in report["rows"].items():
        missing, unknown = report["null_rows"][split], report["unknown_labels"][split]
        dups = report["duplicates_dropped"][split]
        seen = f" ({_listed(unknown_names[split])})" if unknown else ""
        lost = [f"{missing} with a missing input or label"] if missing else []
        lost += [f"{unknown} with labels {source} never had{seen}"] if unknown else []
        if missing + unknown + dups >= rows:
            raise UserError(f"split {split!r} is empty after cleaning: all its {rows} row(s) were dropped "
                            f"({', '.join(lost + ([f'{dups} duplicate input(s)'] if dups else []))}); "
                            f"{_advice(missing, unknown, dups, names, source)}")
        if missing + unknown > MAX_DROPPED_SHARE * rows:  # duplicates are not counted here: corpora hold many
            raise UserError(f"split {split!r} loses {missing + unknown} of its {rows} rows "
                            f"({(missing + unknown) / rows:.0%}, more than {MAX_DROPPED_SHARE:.0%}) to missing or "
                            f"unknown labels ({', '.join(lost)}); {_advice(missing, unknown, 0, names, source)}")
        if unknown:
            notes.append(f"{split}: {unknown} row(s) with labels {source} never had{seen} are left out, not scored")
    return notes


# --------------------------------------------------------------------------------------------- splitting
def _stratified(idx: np.ndarray, y: np.ndarray, size: float | int, seed: int, what: str, names: tuple[str, ...],
                notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) index arrays, stratified by class; drawn at random, with a note naming the classes that
    forced it, when a class is too rare (``what`` names the held-out part in that note)."""
    classes, counts = np.unique(y, return_counts=True)
    rare = [names[c] for c, n in zip(classes, counts) if n < STRATIFY_MIN_ROWS]
    if rare:
        notes.append(f"{what} is drawn at random, not stratified: class(es) {_listed(rare, 10)} have fewer than "
                     f"{STRATIFY_MIN_ROWS} rows, too few for both sides, so it may miss them")
    else:
        try:
            return tuple(train_test_split(idx, test_size=size, stratify=y, random_state=seed))
        except ValueError:  # the held-out part is smaller than the number of classes
            notes.append(f"{what} is drawn at random, not stratified: it is too small to hold all {len(classes)} "
                         f"classes")
    return tuple(train_test_split(idx, test_size=size, random_state=seed))


def _subset(frame: pd.DataFrame, size: int | None, seed: int, what: str, names: tuple[str, ...],
            notes: list[str]) -> pd.DataFrame:
    """A stratified ``size``-row subset of ``frame`` in its own order; the frame itself when it is no larger."""
    if size is None or size >= len(frame):
        return frame
    _, keep = _stratified(np.arange(len(frame)), frame["label"].to_numpy(), size, seed, what, names, notes)
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


def _carve(frames: dict[str, pd.DataFrame], name: str, size: float, names: tuple[str, ...],
           notes: list[str]) -> None:
    train = frames["train"]
    rest, held = _stratified(np.arange(len(train)), train["label"].to_numpy(), size, SPLIT_SEED,
                             f"the {name} split carved from train", names, notes)
    frames[name], frames["train"] = train.iloc[np.sort(held)], train.iloc[np.sort(rest)]


def _hold_out(frames: dict[str, pd.DataFrame], cfg: TrainConfig, carve_test: bool, names: tuple[str, ...],
              notes: list[str]) -> None:
    """Carve the held-out splits the data lacks from train, then draw the ``max_*_samples`` subsets."""
    carve_test = carve_test and "test" not in frames
    if carve_test:
        _carve(frames, "test", 0.1, names, notes)
    if "validation" not in frames:
        _carve(frames, "validation", cfg.val_fraction / (0.9 if carve_test else 1.0), names, notes)
    for split in frames:  # held-out subsets are drawn with the split seed: the same ones whatever the run's seed
        limit, seed = (cfg.max_train_samples, cfg.seed) if split == "train" else (cfg.max_eval_samples, SPLIT_SEED)
        frames[split] = _subset(frames[split], limit, seed, f"the {limit}-row subset of {split}", names, notes)


def load_splits(cfg: TrainConfig, modality: Any, labels: LabelMap | None = None, lone: str = "train") -> Splits:
    """Load ``cfg.data`` into clean train/validation/test splits of ``modality``'s inputs.

    ``labels`` fixes the label map (evaluation of a saved run); otherwise it is read off the training split. With
    ``labels``, a lone data file may be read as another split (``lone``): nothing is carved from it.
    Either way a split that cleaning empties, or that loses more than ``MAX_DROPPED_SHARE`` of its rows to
    missing or unknown labels, is a UserError. File paths in a table are taken relative to that table's folder.
    """
    kind = data_kind(cfg.data)
    if kind is not None and kind != modality.name:
        raise UserError(f"data {cfg.data!r} holds {kind} but model {cfg.model!r} takes {modality.name}; "
                        f"choose a {kind} backbone or {modality.name} data")
    raw = load_raw(cfg.data, lone if labels is not None else "train")
    columns = list(raw["train" if "train" in raw else lone].column_names)
    in_col = find_column(columns, cfg.text_column, modality.input_columns, input_what(modality), "--text-column")
    lab_col = find_column(columns, cfg.label_column, LABEL_COLUMNS, "label", "--label-column", exclude=in_col)
    files, bases = source_files(cfg.data, lone), base_dirs(cfg.data, lone)
    read = {s: _read_split(ds, in_col, lab_col, modality, f"data file {files[s]}" if s in files else
                           f"split {s!r} of {cfg.data}", bases.get(s, os.getcwd())) for s, ds in raw.items()}
    label_map = labels if labels is not None else _label_map(read["train"][1], raw["train"].features[lab_col],
                                                              lab_col)
    lookup = {normalize_label(n): i for i, n in enumerate(label_map.names)}  # labels.json of an older run too
    notes = _drop_unlabelled(read, raw, lab_col)
    frames, report, unknown = _clean(read, lookup)
    report["duplicates_dropped"] = _dedupe(frames, files=modality.reads_files)
    notes += _check_losses(report, unknown, label_map.names, "the training split" if labels is None else "the run")
    if "train" in frames:
        if len(frames["train"]) < 2:
            raise UserError(f"the training split holds {len(frames['train'])} usable example(s) after dropping "
                            f"empty rows, unknown labels and duplicates (of it or of the test/validation data); give "
                            f"more data")
        # Data that names its own kind (built-ins, class folders) gets a test split carved when it has none.
        _hold_out(frames, cfg, kind is not None, label_map.names, notes)
        if frames["train"]["label"].nunique() < 2:
            raise UserError("the training split has fewer than two classes after cleaning; check the label column")
    order = [s for s in ("train", "validation", "test") if s in frames] + sorted(set(frames) - {"train",
                                                                                             "validation", "test"})
    dsd = DatasetDict({s: Dataset.from_pandas(frames[s].reset_index(drop=True), preserve_index=False)
                       for s in order})
    report["sizes"] = {s: len(d) for s, d in dsd.items()}
    for note in notes:  # only now: a run that stops above shows its one error line alone
        log.warning(note)
    return Splits(dsd, label_map, in_col, lab_col, report, kind)


# --------------------------------------------------------------------------------------------- batches
def prepare(datasets: DatasetDict | Dataset, modality: Any, processor: Any,
            train: bool = False) -> DatasetDict | Dataset:
    """The modality's preprocessing of one split or of all splits (``train`` split augmented, if the modality
    does); keeps ``label`` (and any other column), replaces the raw input by model inputs."""
    if isinstance(datasets, Dataset):
        return modality.prepare(datasets, processor, "train" if train else "data", train)
    return DatasetDict({s: modality.prepare(ds, processor, s, s == "train") for s, ds in datasets.items()})
