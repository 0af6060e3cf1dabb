"""Raw data: a ``--data`` spec becomes a DatasetDict of raw splits, and a broken data file becomes one line.

Also here: finding the input and label columns, and the unlabelled inputs of a spec (:func:`load_inputs`).
A spec is a built-in name, a class folder (``[train/]<class>/<file>``), files (``train=a.csv,test=b.csv``: each
split once, ``valid`` / ``val`` / ``dev`` / ``eval`` all meaning ``validation``), one file (the training split), or
a dataset that ``load_dataset`` opens offline.

Files are checked before and after the datasets library reads them, so a user reads the file, the line and the
cause instead of the library's "An error occurred while generating the dataset":

- text formats (CSV, TSV, JSON, JSON lines) must be UTF-8: one pass over the bytes finds the first byte that is
  not (or a NUL byte: a binary or UTF-16 file) and its line;
- when a JSON file fails to load, its first syntax error is located (line by line for JSON lines), so valid files
  pay nothing for that;
- CSV / TSV cells are read as strings and never type-coerced: only an empty cell is missing, so ``NA``, ``None``
  and ``001`` stay as written, and one blank cell cannot turn a column of integers into floats (``0`` into
  ``0.0``). JSON and Parquet are typed: their values keep their types here, and
  :func:`adapters_kit.data.splits.normalize_label` writes labels as text.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Any, Iterator

import pandas as pd
from datasets import Dataset, DatasetDict, Features, Json, LargeList, List, Value, load_dataset
from datasets.utils import logging as datasets_logging

from adapters_kit.builtin.catalog import DATASETS
from adapters_kit.data import media
from adapters_kit.data.conll import CONLL_FORMATS, read_conll
from adapters_kit.errors import UserError

SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation", "eval": "validation"}
FILE_BUILDERS = {".csv": ("csv", {"sep": ","}), ".tsv": ("csv", {"sep": "\t"}), ".tab": ("csv", {"sep": "\t"}),
                 ".json": ("json", {}), ".jsonl": ("json", {}), ".parquet": ("parquet", {})}
TEXT_FORMATS = (".csv", ".tsv", ".tab", ".json", ".jsonl", ".conll", ".conllu")
"""Extensions whose files are text, so must be UTF-8 (Parquet is binary and carries its own encoding)."""
SCAN_CHUNK = 1 << 22
"""Bytes the UTF-8 check decodes at a time: the whole file is scanned once, never held in memory at once."""


# --------------------------------------------------------------------------------------------- file checks
def _first_problem(buf: bytes, final: bool) -> tuple[int | None, int]:
    """(offset of the first NUL or undecodable byte in ``buf``, or None; how many bytes were checked: all, less a
    character cut by the end of a chunk that is not the last)."""
    try:
        buf.decode("utf-8")
        bad, checked = None, len(buf)
    except UnicodeDecodeError as e:
        cut = not final and e.end == len(buf) and e.reason == "unexpected end of data"
        bad, checked = (None if cut else e.start), e.start
    nul = buf.find(b"\x00", 0, checked)
    return (nul if nul >= 0 else bad), checked


def check_utf8(path: str) -> None:
    """A UserError naming the line and the byte of the first thing in ``path`` that is not UTF-8 text."""
    lines, carry = 0, b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(SCAN_CHUNK)
            buf = carry + chunk
            pos, checked = _first_problem(buf, final=not chunk)
            if pos is not None:
                # Text in a legacy encoding (Latin-1, cp1252) never holds NUL; binary files and UTF-16 text do, and
                # re-saving is no advice for those, so a NUL anywhere in the chunk decides which message it is.
                nul = buf.find(b"\x00")
                line = lines + buf.count(b"\n", 0, nul if nul >= 0 else pos) + 1
                if nul >= 0:
                    raise UserError(f"cannot read data file {path} as text: it holds a NUL byte (line {line}), so it "
                                    f"is binary or UTF-16, not UTF-8; check the file format")
                raise UserError(f"data file {path} is not valid UTF-8 (line {line}: byte 0x{buf[pos]:02x}); "
                                f"re-save it as UTF-8")
            if not chunk:
                return
            lines += buf.count(b"\n", 0, checked)
            carry = buf[checked:]


def json_problem(path: str) -> str | None:
    """Where a JSON or JSON-lines file breaks (``line N: json's message``), or None when json reads it whole.
    A ``.json`` file is tried as one document first; when more follows the first value, it is JSON lines."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if not path.lower().endswith(".jsonl"):
        try:
            json.loads(text)
            return None
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":
                return f"line {e.lineno}: {e.msg}"
    # Lines, not splitlines(): JSON strings may hold U+2028 and other characters splitlines() breaks at.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            return f"line {number}: {e.msg}"
        if not isinstance(record, dict):
            return f"line {number}: a JSON {type(record).__name__}, not an object (one record per line)"
    return None


def _as_strings(path: str, sep: str) -> dict:
    """load_dataset("csv") options that read every cell as a string and only an empty cell as missing (pandas
    would turn ``NA`` / ``None`` into missing values and, once one cell is missing, ``0`` into ``0.0``).
    The CSV builder takes its pandas dtypes from ``features``, so the header is read first to name them."""
    columns = pd.read_csv(path, sep=sep, nrows=0, dtype=str, keep_default_na=False).columns
    return {"features": Features({c: Value("string") for c in columns}), "keep_default_na": False,
            "na_values": [""]}


def _innermost(e: BaseException) -> str:
    """The deepest cause's message (datasets wraps the parser's own error in a generic one), last line."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


def _unreadable(path: str, builder: str, e: Exception) -> UserError:
    reason = _innermost(e)
    if "corresponds to no data" in f"{e} {reason}":  # datasets' words for a file with a header and no rows
        return UserError(f"data file {path} has no rows; give a file with data rows")
    where = json_problem(path) if builder == "json" else None
    if where is not None:
        return UserError(f"data file {path} is not valid JSON ({where}); fix that line (JSON lines: one object "
                         f"per line)")
    return UserError(f"cannot read {path} as {builder.upper()} ({reason[:200]}); check the file format")


def _check_path(path: str, split: str) -> str:
    """The extension of a data file that exists, is a non-empty file and has a known format."""
    if not os.path.exists(path):
        raise UserError(f"data file {path} does not exist; check the path")
    if os.path.isdir(path):
        raise UserError(f"{split}={path} is a folder; give a file (CSV, TSV, JSON, JSONL or Parquet)")
    if os.path.getsize(path) == 0:
        raise UserError(f"data file {path} is empty; give a file with a header row and data rows")
    ext = os.path.splitext(path)[1].lower()
    if ext not in FILE_BUILDERS and ext not in CONLL_FORMATS:
        known = ", ".join([*FILE_BUILDERS, *CONLL_FORMATS])
        raise UserError(f"cannot read {path}: unknown extension {ext!r}; use one of {known}")
    return ext


@contextlib.contextmanager
def _parser_errors_unlogged() -> Iterator[None]:
    """datasets logs a parser's failure itself (an ERROR line on stderr) before raising it; the user gets one line
    of ours instead."""
    level = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(level)


def load_file(path: str, split: str) -> Dataset:
    """One data file as a Dataset (CSV / TSV cells as strings), or a UserError naming what is wrong with it."""
    ext = _check_path(path, split)
    if ext in CONLL_FORMATS:
        check_utf8(path)
        return read_conll(path, CONLL_FORMATS[ext])
    builder, kwargs = FILE_BUILDERS[ext]
    if ext in TEXT_FORMATS:
        check_utf8(path)
    try:
        if builder == "csv":
            kwargs = {**kwargs, **_as_strings(path, kwargs["sep"])}
        with _parser_errors_unlogged():
            ds = load_dataset(builder, data_files={split: os.path.abspath(path)}, split=split, **kwargs)
    except Exception as e:  # datasets wraps parser errors in many types; all mean "unreadable"
        raise _unreadable(path, builder, e) from None
    if len(ds) == 0:
        raise UserError(f"data file {path} has no rows; give a file with data rows")
    return ds


def check_one_per_row(ds: Dataset, column: str, what: str, where: str) -> None:
    """A UserError when ``column`` holds lists or records (a JSON or Parquet file can), naming the first row;
    only features that can hold them are read. ``where`` names the source (its data file) in the message."""
    if not isinstance(ds.features[column], (dict, List, LargeList, Json)):
        return
    row = next((i for i, v in enumerate(ds[column]) if isinstance(v, (list, tuple, dict))), None)
    if row is not None:
        raise UserError(f"{where}: column {column!r} holds a list or record (row {row + 1}: "
                        f"{str(ds[row][column])[:40]}); give one {what} per row, a string or a number")


# --------------------------------------------------------------------------------------------- class folders
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


# --------------------------------------------------------------------------------------------- specs
def parse_files(spec: str) -> dict[str, str]:
    """``train=a.csv,test=b.csv`` -> {split: path}, validation aliases normalised. A split named twice (``valid=``
    and ``validation=`` included) is refused: silently keeping one of the files would train or score on the wrong
    data."""
    files, parts = {}, {}
    for part in spec.split(","):
        name, sep, path = (p.strip() for p in part.partition("="))
        if not sep or not name or not path:
            raise UserError(f"bad --data part {part!r}: write files as train=a.csv,test=b.csv")
        split = SPLIT_ALIASES.get(name, name)
        if split in files:
            raise UserError(f"--data names the {split} split twice ({parts[split]} and {name}={path}); give each "
                            f"split one file")
        files[split], parts[split] = path, f"{name}={path}"
    if "train" not in files:
        raise UserError(f"--data {spec!r} names no train file; add train=PATH")
    return files


def source_files(spec: str, lone: str = "train") -> dict[str, str]:
    """The data file each split of a file spec was read from (empty for built-ins, folders and datasets); a lone
    file is the split ``lone``."""
    if "=" in spec and spec not in DATASETS:
        return parse_files(spec)
    if os.path.isfile(spec):
        return {lone: spec}
    return {}


def base_dirs(spec: str, lone: str = "train") -> dict[str, str]:
    """The folder each split's relative file paths are relative to: its data file's folder."""
    return {s: os.path.dirname(os.path.abspath(p)) for s, p in source_files(spec, lone).items()}


def absolute_paths(values: list, base: str) -> list:
    """Relative file paths (strings) joined to ``base``; absolute paths and other values as they are."""
    return [v if not isinstance(v, str) or os.path.isabs(v) else os.path.normpath(os.path.join(base, v))
            for v in values]


def load_raw(spec: str, lone: str = "train") -> DatasetDict:
    """Any data spec -> DatasetDict of raw splits (validation aliases normalised). A lone file is the split
    ``lone``: the training data, or (``eval --data new.csv``) the one split being scored."""
    if spec in DATASETS:
        frames = DATASETS[spec].load()
        return DatasetDict({s: Dataset.from_pandas(df, preserve_index=False) for s, df in frames.items()})
    if is_class_folder(spec):
        return load_folder(spec)[0]
    if "=" in spec:
        return DatasetDict({s: load_file(p, s) for s, p in parse_files(spec).items()})
    if os.path.isfile(spec):
        return DatasetDict({lone: load_file(spec, lone)})
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


# --------------------------------------------------------------------------------------------- columns, inputs
def input_what(modality: Any) -> str:
    """What one input of ``modality`` is, for messages: ``text``, ``image path``, ``audio path``."""
    return "text" if modality.name == "text" else f"{modality.name} path"


def find_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, flag: str,
                exclude: tuple[str | None, ...] = ()) -> str:
    """The column the user named, or the first common name present (case-insensitive), never one of
    ``exclude``."""
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{what} column {wanted!r} not found; columns are: {', '.join(columns)}")
        return wanted
    lower = {c.lower(): c for c in columns if c not in exclude}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    raise UserError(f"no {what} column found among: {', '.join(columns)}; name it with {flag}")


PAIR_COLUMNS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "passage"), ("text_a", "text_b"),
                ("query", "document"), ("question1", "question2"), ("sentence_a", "sentence_b"))
"""Column pairs read as sentence pairs (first text, second text) when the user names neither column."""


def find_input_columns(columns: list[str], text: str | None, pair: str | None, modality: Any) -> tuple[str, str | None]:
    """(input column, second text column of a sentence pair or None): the columns named, else a common pair of
    columns (:data:`PAIR_COLUMNS`, text only), else one common input column name."""
    if pair is not None:
        if modality.name != "text":
            raise UserError(f"--text-pair-column pairs two texts, but model takes {modality.name} inputs; choose a "
                            f"text backbone or leave the pair column out")
        if pair not in columns:
            raise UserError(f"text pair column {pair!r} not found; columns are: {', '.join(columns)}")
    if text is None and modality.name == "text":
        lower = {c.lower(): c for c in columns}
        found = next(((lower[a], lower[b]) for a, b in PAIR_COLUMNS if a in lower and b in lower
                      and (pair is None or lower[b] == pair)), None)
        if found is not None:
            return found
    first = find_column(columns, text, modality.input_columns, input_what(modality), "--text-column", exclude=(pair,))
    if first == pair:
        raise UserError(f"--text-column and --text-pair-column both name {pair!r}; a pair needs two columns")
    return first, pair


def is_blank(value: Any) -> bool:
    """A missing input: None, NaN, a string of whitespace (nothing to tokenise, no path to open), or a sentence
    pair with either text missing."""
    if isinstance(value, tuple):  # a sentence pair
        return any(is_blank(v) for v in value)
    if isinstance(value, list):  # the words of a sentence
        return not value
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value))


def load_inputs(spec: str, modality: Any, column: str | None = None, pair: str | None = None) -> Dataset:
    """Unlabelled inputs (DANN's target domain): the train split of a data spec, only its input column(s) (column
    ``input``: a text, a path, or a sentence pair's two texts); a label column, if there is one, is never read.
    Empty values are dropped."""
    train = load_raw(spec)["train"]
    col, pair_col = find_input_columns(list(train.column_names), column, pair, modality)
    values = list(zip(train[col], train[pair_col])) if pair_col else train[col]
    values = [v for v in values if not is_blank(v)]
    if modality.reads_files:
        values = absolute_paths(values, base_dirs(spec).get("train", os.getcwd()))
    if not values:
        raise UserError(f"{spec} holds no inputs in column {col!r}; give a file with data rows")
    return Dataset.from_dict({"input": values})
