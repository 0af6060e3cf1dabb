"""Modality strategies: how raw inputs of one kind become model inputs.

A modality owns the processor (tokenizer, image processor, feature extractor), how the backbone is loaded, the
per-example preprocessing (with training-time augmentation), batch collation and the default pooling. It is built
from the run's settings (``max_length``, ``augment``, ``flip``, ``audio_seconds``), so a reloaded run preprocesses
exactly as its training did.

- ``text``: tokenised once (``datasets.map``), batches padded to their longest text.
- ``image``: files read with Pillow on the fly (RGB), random resized crop + flip while training a fine-tuning
  method, then the backbone's own image processor (resize, crop, normalise).
- ``audio``: files read with soundfile on the fly (mono, resampled to the extractor's rate), gain / time shift /
  noise while training, then the backbone's feature extractor. Clips are cut or padded to ``audio_seconds``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoTokenizer,
    DataCollatorWithPadding,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from adapters_kit.config import TrainConfig
from adapters_kit.data import media
from adapters_kit.errors import UserError
from adapters_kit.registry import Registry

CLS_TOKEN_FAMILIES = {"vit", "deit", "beit", "dinov2", "vit_msn", "vit_mae", "data2vec-vision", "dinov2_with_registers"}
"""Image transformers whose first token summarises the image (what their classification heads read)."""
MAX_AUDIO_SECONDS = 30


class Modality(Protocol):
    name: str
    input_columns: tuple[str, ...]
    """Column names tried, in order, when the user does not name the input column."""
    reads_files: bool
    """Inputs are file paths (resolved against the data file's folder, checked before training)."""

    def load_processor(self, model_path: str) -> Any: ...

    def load_backbone(self, model_path: str, processor: Any) -> nn.Module: ...

    def default_pooling(self, config) -> str: ...

    def fit(self, processor: Any, train_inputs: list) -> tuple[Any, TrainConfig]: ...

    def prepare(self, ds: Dataset, processor: Any, split: str, train: bool) -> Dataset: ...

    def encode(self, processor: Any, inputs: list, train: bool = False) -> dict: ...

    def collator(self, processor: Any) -> Any: ...

    def signature(self, processor: Any) -> str: ...


MODALITIES: Registry[type] = Registry("modality")


def _from_pretrained(cls, path: str, **kwargs) -> Any:
    """``cls.from_pretrained`` with a one-line error when the checkpoint cannot be had (offline, not cached)."""
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load backbone {path!r}: {first[:300]}") from None


ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
"""What families call the dropout on attention probabilities (BERT / ViT, Llama / Whisper / wav2vec2, GPT-2)."""


class _Base:
    reads_files = False

    def __init__(self, cfg: TrainConfig | None = None):
        self.cfg = cfg or TrainConfig()

    def load_backbone(self, model_path: str, processor: Any) -> nn.Module:
        return _from_pretrained(AutoModel, model_path, **self.config_overrides(model_path))

    def config_overrides(self, model_path: str) -> dict[str, Any]:
        """Backbone config fields this run sets before the model is built: the attention-probability dropout when
        ``cfg.attention_dropout`` is given (it matters in training only; inference never drops)."""
        if self.cfg.attention_dropout is None:
            return {}
        try:
            config = AutoConfig.from_pretrained(model_path)
        except (OSError, ValueError):
            return {}  # loading the backbone itself reports it precisely
        return {f: self.cfg.attention_dropout for f in ATTENTION_DROPOUT_FIELDS if hasattr(config, f)}

    def fit(self, processor: Any, train_inputs: list) -> tuple[Any, TrainConfig]:
        """Settle settings that depend on the training data; returns the processor and the settled config."""
        return processor, self.cfg

    def signature(self, processor: Any) -> str:
        return ""


@MODALITIES.register("text")
class TextModality(_Base):
    name = "text"
    input_columns = ("text", "sentence", "content", "document", "body", "message", "review", "review_text",
                     "sms", "article", "question", "tweet", "tokens", "words")

    def load_processor(self, model_path: str) -> Any:
        tok = AutoTokenizer.from_pretrained(model_path)
        if tok.pad_token is None:  # decoder LMs ship without one; pooling masks it out anyway
            tok.pad_token = tok.eos_token
        return tok

    def default_pooling(self, config) -> str:
        """``last`` for decoder-only LMs (the last real token has seen the whole text), else ``mean``."""
        kind = getattr(config, "model_type", "")
        decoder_only = kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        return "last" if decoder_only else "mean"

    def encode(self, processor: Any, inputs: list, train: bool = False) -> dict:
        """Token ids of texts, of sentence pairs (two texts per input) as the tokenizer's pair encoding
        (``[CLS] a [SEP] b [SEP]`` for BERT) with ``longest_first`` truncation: the longer text loses tokens
        first, so a short question is kept whole beside a long passage; or of sentences given as lists of words
        (token classification), with ``word_ids``: each token's word index, -1 for special tokens."""
        pairs = self.cfg.text_pair_column is not None
        if inputs and isinstance(inputs[0], (list, tuple)) and not pairs:
            return self._encode_words(processor, inputs)
        flat = [t for pair in inputs for t in pair] if pairs else inputs
        bad = next((t for t in flat if not isinstance(t, str)), "ok")
        if bad != "ok" or (pairs and any(len(p) != 2 for p in inputs)):
            raise UserError(f"the text column holds a non-text value {bad!r}; clean the data or pick another "
                            f"column with --text-column")
        # No padding here: batches are padded to their own longest text by the collator.
        if pairs:
            first, second = (list(t) for t in zip(*inputs))
            return processor(first, second, truncation="longest_first", max_length=self.cfg.max_length)
        return processor(inputs, truncation=True, max_length=self.cfg.max_length)

    def _encode_words(self, processor: Any, inputs: list) -> dict:
        bad = next((w for ws in inputs for w in ws if not isinstance(w, str)), "ok")
        if bad != "ok":
            raise UserError(f"the words column holds a non-text value {bad!r}; give lists of words")
        enc = processor(inputs, is_split_into_words=True, truncation=True, max_length=self.cfg.max_length)
        out = dict(enc)
        out["word_ids"] = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(inputs))]
        return out

    def prepare(self, ds: Dataset, processor: Any, split: str, train: bool) -> Dataset:
        return ds.map(lambda b: self.encode(processor, b["input"]), batched=True, remove_columns=["input"],
                      desc=f"tokenise {split}")

    def collator(self, processor: Any) -> Any:
        return PaddingCollator(processor)


LABEL_PAD = -100
"""Pads label sequences of different lengths (tags per token); PyTorch's cross-entropy ignores it by default."""


class PaddingCollator:
    """Text batches padded to their longest text (transformers' ``DataCollatorWithPadding``), and label sequences of
    different lengths (token classification) padded with :data:`LABEL_PAD`."""

    def __init__(self, processor: Any):
        self.inner = DataCollatorWithPadding(processor, return_tensors="pt")

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        labels = [it["label"] for it in items] if items and "label" in items[0] else None
        if labels is None or not isinstance(labels[0], list) or len({len(x) for x in labels}) == 1:
            return self.inner(items)
        batch = self.inner([{k: v for k, v in it.items() if k != "label"} for it in items])
        width = max(len(x) for x in labels)
        batch["labels"] = torch.tensor([list(x) + [LABEL_PAD] * (width - len(x)) for x in labels])
        return batch


class _Files(_Base):
    """Inputs are file paths, decoded on the fly (the decoded arrays would not fit in memory for real sets)."""

    reads_files = True
    what = "files"

    def read(self, item: Any, processor: Any) -> Any:
        raise NotImplementedError

    def augmenting(self) -> bool:
        """On by default for methods that change the backbone; a frozen backbone's features are cached, so
        augmenting them would be pointless."""
        return bool(self.cfg.augment)  # resolve_config sets None to the method's default

    def prepare(self, ds: Dataset, processor: Any, split: str, train: bool) -> Dataset:
        """Drop unreadable files (reported; more than 1% is an error), record each file's stamp (part of the
        feature-cache key) and decode batches on the fly."""
        paths = ds["input"]
        ok = media.check_files(paths, lambda p: self.read(p, processor), self.what, split)
        if not all(ok):
            ds = ds.select([i for i, good in enumerate(ok) if good])
        ds = ds.add_column("stamp", [media.file_stamp(p) for p in ds["input"]])
        augment = train and self.augmenting()

        def transform(batch: dict[str, list]) -> dict:
            out = dict(self.encode(processor, batch["input"], train=augment))
            out.update({k: v for k, v in batch.items() if k not in ("input", "stamp")})
            return out

        return ds.with_transform(transform)

    def collator(self, processor: Any) -> Any:
        return collate_arrays


def encoded_rows(enc: dict[str, list]) -> list[dict]:
    """``encode``'s columns (one list per model input) as one dict per input, what a collator takes."""
    return [dict(zip(enc.keys(), row)) for row in zip(*enc.values())]


def collate_arrays(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack per-example arrays; 1-D arrays of different lengths (raw waveforms, their masks) are zero-padded."""
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        name = "labels" if key == "label" else key
        if isinstance(values[0], (int, float, np.integer, np.floating)):
            out[name] = torch.tensor(values)
            continue
        arrays = [torch.as_tensor(np.asarray(v)) for v in values]
        if arrays[0].dim() == 1 and len({a.shape[0] for a in arrays}) > 1:
            arrays = [nn.functional.pad(a, (0, max(x.shape[0] for x in arrays) - a.shape[0])) for a in arrays]
        out[name] = torch.stack(arrays)
    return out


@MODALITIES.register("image")
class ImageModality(_Files):
    name = "image"
    input_columns = ("image", "image_path", "img", "path", "file", "filename", "filepath", "file_path")
    what = "images"

    def load_processor(self, model_path: str) -> Any:
        return AutoImageProcessor.from_pretrained(model_path)

    def default_pooling(self, config) -> str:
        """``cls`` for ViT-style transformers, else ``pooler`` (CNNs' global average pool, ConvNeXt's pooled
        layer norm)."""
        return "cls" if getattr(config, "model_type", "") in CLS_TOKEN_FAMILIES else "pooler"

    def read(self, item: Any, processor: Any) -> Image.Image:
        return item.convert("RGB") if isinstance(item, Image.Image) else media.load_image(item)

    def encode(self, processor: Any, inputs: list, train: bool = False) -> dict:
        images = [self.read(x, processor) for x in inputs]
        if train:
            images = [media.augment_image(im, flip=self.cfg.flip) for im in images]
        return {"pixel_values": list(processor(images, return_tensors="np")["pixel_values"])}

    def signature(self, processor: Any) -> str:
        return processor.to_json_string()


@MODALITIES.register("audio")
class AudioModality(_Files):
    name = "audio"
    input_columns = ("audio", "audio_path", "path", "file", "filename", "filepath", "file_path", "wav")
    what = "audio"

    def load_processor(self, model_path: str) -> Any:
        fe = AutoFeatureExtractor.from_pretrained(model_path)
        if self.cfg.audio_seconds is not None:
            self._set_clip(fe, self.cfg.audio_seconds)
        return fe

    def default_pooling(self, config) -> str:
        return "mean"

    @staticmethod
    def _set_clip(fe: Any, seconds: float) -> None:
        if hasattr(fe, "nb_max_frames"):  # Whisper: the extractor pads/cuts every clip to chunk_length seconds
            fe.chunk_length = int(seconds)
            fe.n_samples = int(seconds) * fe.sampling_rate
            fe.nb_max_frames = fe.n_samples // fe.hop_length

    def fit(self, processor: Any, train_inputs: list) -> tuple[Any, TrainConfig]:
        """Clip length: ``audio_seconds``, or the longest training clip rounded up to whole seconds (at most
        30 s, Whisper's window). Whisper's encoder then runs on that many seconds instead of 30."""
        if self.cfg.audio_seconds is None:
            longest = max((media.audio_seconds(p) for p in train_inputs if _readable_header(p)), default=1.0)
            self.cfg = self.cfg.replace(audio_seconds=float(min(MAX_AUDIO_SECONDS, max(1, math.ceil(longest)))))
        self._set_clip(processor, self.cfg.audio_seconds)
        return processor, self.cfg

    def load_backbone(self, model_path: str, processor: Any) -> nn.Module:
        """The encoder of an encoder-decoder (Whisper); Whisper's position table is cut to the clip length so
        its encoder takes clips shorter than 30 s (the first positions, as the model saw them for audio that
        starts at the beginning of the window)."""
        model = super().load_backbone(model_path, processor)
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        frames = getattr(processor, "nb_max_frames", None)
        if frames is not None and hasattr(model, "embed_positions"):
            positions = frames // (model.conv1.stride[0] * model.conv2.stride[0])
            table = model.embed_positions.weight.data[:positions].clone()
            model.embed_positions = nn.Embedding.from_pretrained(table, freeze=True)
            model.config.max_source_positions = positions
        return model

    def read(self, item: Any, processor: Any) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item.astype(np.float32)
        return media.read_audio(item, processor.sampling_rate)

    def encode(self, processor: Any, inputs: list, train: bool = False) -> dict:
        rate = processor.sampling_rate
        limit = int((self.cfg.audio_seconds or MAX_AUDIO_SECONDS) * rate)
        waves = [self.read(x, processor)[:limit] for x in inputs]
        if train:
            waves = [media.augment_audio(w, rate) for w in waves]
        kwargs = {} if hasattr(processor, "nb_max_frames") else {"padding": True}
        enc = processor(waves, sampling_rate=rate, return_tensors="np", **kwargs)
        return {k: list(v) for k, v in enc.items()}

    def signature(self, processor: Any) -> str:
        return processor.to_json_string()


def _readable_header(path: str) -> bool:
    try:
        media.audio_seconds(path)
        return True
    except media.UNREADABLE:
        return False


def model_modality(model_path: str) -> str:
    """``image``, ``audio`` or ``text`` for a checkpoint folder or Hub id, from its config's model type."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    )

    try:
        kind = AutoConfig.from_pretrained(model_path).model_type
    except (OSError, ValueError):
        return "text"  # cannot tell here; loading it later gives the precise error
    if kind in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "image"
    if kind in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES:
        return "audio"
    return "text"


def get_modality(name: str, cfg: TrainConfig | None = None) -> Modality:
    return MODALITIES.get(name)(cfg)
