"""Config becomes data: find columns, read labels, build the label map, clean, dedupe, split, preprocess, batch.

``load_splits`` returns a :class:`Splits` whose datasets have exactly two columns, ``input`` (a text, a file
path, or a pair of texts) and ``label`` (the task's target). ``prepare`` runs the modality's preprocessing;
``make_loaders`` batches.
Specs and files become raw splits in :mod:`adapters_kit.data.files` (which names a broken file's line).

What a label is, the task decides (:mod:`adapters_kit.tasks`): a class name (text, normalised as
:func:`adapters_kit.tasks.labels.normalize_label` says), a list of label names, or a number. The task is
``cfg.task``, or detected from the training split's label column and printed. The ``label`` column holds the
task's training target (a class id, a multi-hot row, a number). Sentence pairs keep both texts as the input.

Cleaning drops, and counts in ``Splits.report``, rows with a missing or blank input or label, rows whose label the
training split (or the saved run) never had, and duplicate inputs. A split left empty, or losing more than
``MAX_DROPPED_SHARE`` of its rows to missing or unknown labels, is an error; a smaller share of unknown labels,
and classes too rare to stratify a carved split, are one warning line each.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, LargeList, List, concatenate_datasets
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
    find_input_columns,
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
from adapters_kit.tasks import Task, detect_task, get_task, task_class
from adapters_kit.tasks.base import DEFAULT_TASK
from adapters_kit.tasks.classification import FREE_TEXT_MIN_VALUES as FREE_TEXT_MIN_VALUES  # kept importable here
from adapters_kit.tasks.labels import LabelMap as LabelMap  # moved to tasks.labels; kept importable from here
from adapters_kit.tasks.labels import listed as _listed
from adapters_kit.tasks.labels import normalize_label as normalize_label
from adapters_kit.tasks.labels import sort_label_names as sort_label_names
from adapters_kit.tasks.token import TRUNCATED, align_labels

log = logging.getLogger(__name__)

SPLIT_SEED = 1234
"""Carved splits use this fixed seed, not the training seed, so a data set is always split the same way."""
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "y", "topic", "intent", "sentiment", "score",
                 "rating", "ner_tags", "tags", "pos_tags", "upos", "chunk_tags")
MAX_DROPPED_SHARE = 0.1
"""A split losing more than this share of its rows to missing inputs / labels or to labels the training split (or
the saved run) never had is an error, not a quiet drop: that much usually means a wrong column, a wrong file or
labels spelled differently. Duplicates are not counted (real corpora hold many)."""
STRATIFY_MIN_ROWS = 2
"""Rows a class needs for a stratified split to put one on each side; rarer classes make the split random."""


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
    task: str = DEFAULT_TASK
    """The task the labels were read for (``cfg.task``, or the detected one)."""
    pair_column: str | None = None
    """The second text column of sentence pairs (``input`` then holds both texts), or ``None``."""

    def split(self, name: str, data: str) -> Dataset:
        """The split ``name``, or a UserError naming the splits ``data`` (the spec it was read from) has."""
        if name not in self.datasets:
            raise UserError(f"data {data!r} has no split {name!r}; splits are: {', '.join(self.datasets)}")
        return self.datasets[name]


# --------------------------------------------------------------------------------------------- reading
def _label_cells(ds: Dataset, column: str) -> tuple[list, list[str] | None]:
    """A split's label cells as Python values, a ClassLabel's ids (also inside a list feature) decoded to their
    names (-1: missing); and the names a ClassLabel declares, in its order, or None."""
    feature = ds.features[column]
    inner = feature.feature if isinstance(feature, (List, LargeList)) else None
    if isinstance(feature, ClassLabel):
        return [feature.names[v] if v is not None and v >= 0 else None for v in ds[column]], list(feature.names)
    if isinstance(inner, ClassLabel):
        return [None if v is None else [inner.names[i] for i in v] for v in ds[column]], list(inner.names)
    return list(ds[column]), None


def _read_split(ds: Dataset, columns: tuple[str, str | None, str], task: type, cfg: TrainConfig, modality: Any,
                where: str, base: str) -> tuple[list, list]:
    """A split's inputs (relative file paths made absolute against ``base``; a pair of texts per row when there
    is a pair column) and its labels as the task reads them. ``where`` names the split's source in messages."""
    in_col, pair_col, lab_col = columns
    lacking = [c for c in columns if c is not None and c not in ds.column_names]
    if lacking:
        raise UserError(f"{where} lacks column {lacking[0]!r}; columns are: {', '.join(ds.column_names)}")
    for col in (in_col, pair_col):
        if col is not None and not task.word_inputs:
            check_one_per_row(ds, col, input_what(modality), where)
    inputs = ds[in_col]
    if pair_col is not None:
        inputs = list(zip(inputs, ds[pair_col]))
    elif modality.reads_files:
        inputs = absolute_paths(inputs, base)
    return inputs, task.read(_label_cells(ds, lab_col)[0], lab_col, where, cfg, inputs)


# --------------------------------------------------------------------------------------------- cleaning
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _clean(read: dict[str, tuple[list, list]], task: Task) -> tuple[dict, dict, dict]:
    """Drop rows with a missing input or label, then rows whose label the task's label space lacks; labels become
    the task's targets. Returns the frames, the counts (``rows``, ``null_rows``, ``unknown_labels`` per split) and
    each split's unknown label names, most frequent first."""
    frames, unknown_names = {}, {}
    report: dict[str, Any] = {"rows": {}, "null_rows": {}, "unknown_labels": {}}
    for split, (inputs, labels) in read.items():
        df = pd.DataFrame({"input": pd.Series(inputs, dtype=object), "label": pd.Series(labels, dtype=object)})
        missing = df["input"].map(is_blank) | df["label"].map(_missing)
        df = df[~missing]
        # object dtype: a None among integer ids must not turn the ids into floats
        targets = pd.Series([task.target(v) for v in df["label"]], index=df.index, dtype=object)
        known = targets.map(lambda t: t is not None).astype(bool)
        report["rows"][split], report["null_rows"][split] = len(missing), int(missing.sum())
        report["unknown_labels"][split] = int((~known).sum())
        names = pd.Series([n for v in df.loc[~known, "label"] for n in task.unknown(v)], dtype=object)
        unknown_names[split] = names.value_counts().index.tolist()
        frames[split] = df[known].assign(label=targets[known])
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
def _stratified(idx: np.ndarray, labels: pd.Series, size: float | int, seed: int, what: str, task: Task,
                notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) index arrays, stratified by the task's strata (classes, label combinations, target
    quantiles); drawn at random, with a note naming the strata that forced it, when one is too rare (``what``
    names the held-out part in that note)."""
    y, names = task.strata(labels.tolist())
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


def _subset(frame: pd.DataFrame, size: int | None, seed: int, what: str, task: Task,
            notes: list[str]) -> pd.DataFrame:
    """A stratified ``size``-row subset of ``frame`` in its own order; the frame itself when it is no larger."""
    if size is None or size >= len(frame):
        return frame
    _, keep = _stratified(np.arange(len(frame)), frame["label"], size, seed, what, task, notes)
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
        # lists of words become tuples, which hash
        key = df["input"].map(_content_hash) if files else df["input"].map(lambda v: tuple(v) if isinstance(
            v, list) else v)
        keep = ~key.duplicated() & ~key.isin(seen)
        dropped[split] = int((~keep).sum())
        frames[split] = df[keep]
        seen.update(key[keep])
    return dropped


def _carve(frames: dict[str, pd.DataFrame], name: str, size: float, task: Task, notes: list[str]) -> None:
    train = frames["train"]
    rest, held = _stratified(np.arange(len(train)), train["label"], size, SPLIT_SEED,
                             f"the {name} split carved from train", task, notes)
    frames[name], frames["train"] = train.iloc[np.sort(held)], train.iloc[np.sort(rest)]


def _hold_out(frames: dict[str, pd.DataFrame], cfg: TrainConfig, carve_test: bool, task: Task,
              notes: list[str]) -> None:
    """Carve the held-out splits the data lacks from train, then draw the ``max_*_samples`` subsets."""
    carve_test = carve_test and "test" not in frames
    if carve_test:
        _carve(frames, "test", 0.1, task, notes)
    if "validation" not in frames:
        _carve(frames, "validation", cfg.val_fraction / (0.9 if carve_test else 1.0), task, notes)
    for split in frames:  # held-out subsets are drawn with the split seed: the same ones whatever the run's seed
        limit, seed = (cfg.max_train_samples, cfg.seed) if split == "train" else (cfg.max_eval_samples, SPLIT_SEED)
        frames[split] = _subset(frames[split], limit, seed, f"the {limit}-row subset of {split}", task, notes)


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
    in_col, pair_col = find_input_columns(columns, cfg.text_column, cfg.text_pair_column, modality)
    lab_col = find_column(columns, cfg.label_column, LABEL_COLUMNS, "label", "--label-column",
                          exclude=(in_col, pair_col))
    # A saved run's task is in its config (older runs: classification); a new run's is named or detected.
    train_cells, declared = _label_cells(raw["train"], lab_col) if labels is None else ([], None)
    name = cfg.task or (DEFAULT_TASK if labels is not None else detect_task(train_cells, raw["train"][in_col]))
    files, bases = source_files(cfg.data, lone), base_dirs(cfg.data, lone)
    read = {s: _read_split(ds, (in_col, pair_col, lab_col), task_class(name), cfg, modality,
                           f"data file {files[s]}" if s in files else f"split {s!r} of {cfg.data}",
                           bases.get(s, os.getcwd())) for s, ds in raw.items()}
    label_map = labels if labels is not None else task_class(name).fit(read["train"][1], declared, lab_col)
    task = get_task(name, label_map, cfg)
    notes = _drop_unlabelled(read, raw, lab_col)
    frames, report, unknown = _clean(read, task)
    report["task"], report["task_detected"] = name, cfg.task is None and labels is None
    report["duplicates_dropped"] = _dedupe(frames, files=modality.reads_files)
    notes += _check_losses(report, unknown, label_map.names, "the training split" if labels is None else "the run")
    if "train" in frames:
        if len(frames["train"]) < 2:
            raise UserError(f"the training split holds {len(frames['train'])} usable example(s) after dropping "
                            f"empty rows, unknown labels and duplicates (of it or of the test/validation data); give "
                            f"more data")
        # Data that names its own kind (built-ins, class folders) gets a test split carved when it has none.
        _hold_out(frames, cfg, kind is not None, task, notes)
        if frames["train"]["label"].map(repr).nunique() < 2:
            raise UserError("the training split has fewer than two different labels after cleaning; check the label "
                            "column")
    order = [s for s in ("train", "validation", "test") if s in frames] + sorted(set(frames) - {"train",
                                                                                             "validation", "test"})
    dsd = DatasetDict({s: Dataset.from_pandas(frames[s].reset_index(drop=True), preserve_index=False)
                       for s in order})
    report["sizes"] = {s: len(d) for s, d in dsd.items()}
    for note in notes:  # only now: a run that stops above shows its one error line alone
        log.warning(note)
    return Splits(dsd, label_map, in_col, lab_col, report, kind, name, pair_col)


# --------------------------------------------------------------------------------------------- batches
def prepare(datasets: DatasetDict | Dataset, modality: Any, processor: Any,
            train: bool = False) -> DatasetDict | Dataset:
    """The modality's preprocessing of one split or of all splits (``train`` split augmented, if the modality
    does); keeps ``label`` (and any other column), replaces the raw input by model inputs. Sentences given as
    words get their tags aligned to the sub-tokens (:func:`adapters_kit.tasks.token.align_labels`)."""
    if isinstance(datasets, Dataset):
        return _align(modality.prepare(datasets, processor, "train" if train else "data", train), "data")
    return DatasetDict({s: _align(modality.prepare(ds, processor, s, s == "train"), s) for s, ds in datasets.items()})


def add_rows(ds: Dataset, rows: Dataset) -> Dataset:
    """``ds`` followed by ``rows``, which hold its columns except ``label``: their ``label`` cells repeat ``ds``'s
    first one (a placeholder of the right type, never read as a label: the caller marks such rows)."""
    rows = rows.add_column("label", [ds[0]["label"]] * len(rows)).select_columns(ds.column_names)
    return concatenate_datasets([ds, rows.cast(ds.features)])


def _align(ds: Dataset, split: str) -> Dataset:
    if "word_ids" not in ds.column_names:
        return ds
    if "label" in ds.column_names:
        ds = ds.map(lambda b: {"label": [align_labels(w, t) for w, t in zip(b["word_ids"], b["label"])]},
                    batched=True, desc=f"align tags {split}")
        cut = sum(sum(1 for t in row if t <= TRUNCATED) for row in ds["label"])
        if cut:
            log.warning("%s: %d word(s) lie beyond max_length and get no prediction; they are scored as missed "
                        "(raise --max-length to keep them)", split, cut)
    return ds.remove_columns("word_ids")
