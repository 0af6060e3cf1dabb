"""Tiny random-config checkpoints of every supported backbone family, and small image / audio data sets.

Each model folder holds a config, random weights and the family's own processor, saved with ``save_pretrained``,
so tests go through the same ``from_pretrained`` paths as real checkpoints. Images and sounds are synthetic but
separable: colour blobs and pure tones.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
TONES = {"low": 220.0, "mid": 660.0, "high": 1760.0}
WORDS = "the a of and match goal team market shares profit software data chip news".split()


def word_tokenizer(folder: str, model_type: str):
    """A word-level ``tokenizers`` tokenizer saved as the family's fast tokenizer (BOS/EOS/PAD/UNK present)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   pad_token=None if model_type == "llama" else "<pad>")
    fast.save_pretrained(folder)
    return len(vocab)


def _image_processor(size: int = 32):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size})


def build_family(name: str, folder: str) -> str:
    """Save a tiny random ``name`` backbone (and its processor) into ``folder``; returns the folder."""
    import torch
    import transformers as T

    torch.manual_seed(0)
    small = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    if name in ("roberta", "deberta-v2", "llama"):
        vocab = word_tokenizer(folder, name)
        cfg = {"roberta": lambda: T.RobertaConfig(vocab_size=vocab, max_position_embeddings=40, pad_token_id=0,
                                                   **small),
               "deberta-v2": lambda: T.DebertaV2Config(vocab_size=vocab, max_position_embeddings=40, pad_token_id=0,
                                                       **small),
               "llama": lambda: T.LlamaConfig(vocab_size=vocab, max_position_embeddings=40, num_key_value_heads=2,
                                              bos_token_id=2, eos_token_id=3, **small)}[name]()
        T.AutoModel.from_config(cfg).save_pretrained(folder)
        return folder
    if name in ("vit", "resnet", "convnext", "mobilenet_v2"):
        cfg = {"vit": lambda: T.ViTConfig(image_size=32, patch_size=8, **small),
               "resnet": lambda: T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
               "convnext": lambda: T.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
               "mobilenet_v2": lambda: T.MobileNetV2Config(image_size=32, depth_multiplier=0.35, tf_padding=False,
                                                           layer_norm_eps=1e-5)}[name]()
        T.AutoModel.from_config(cfg).save_pretrained(folder)
        _image_processor().save_pretrained(folder)
        return folder
    if name in ("wav2vec2", "hubert"):
        conv = dict(conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                    num_conv_pos_embedding_groups=2, do_stable_layer_norm=False)
        cls = T.Wav2Vec2Config if name == "wav2vec2" else T.HubertConfig
        T.AutoModel.from_config(cls(**small, **conv)).save_pretrained(folder)
        T.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
        return folder
    if name == "whisper":
        cfg = T.WhisperConfig(vocab_size=60, d_model=16, encoder_layers=2, decoder_layers=1,
                              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                              decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500, max_target_positions=32,
                              pad_token_id=0, bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)
        T.WhisperModel(cfg).save_pretrained(folder)
        T.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        return folder
    raise ValueError(name)


def blob_image(colour: tuple[int, int, int], rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    arr = np.clip(np.array(colour)[None, None] + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def write_image_folder(root: str, per_class: dict[str, int], seed: int = 0) -> str:
    """``root/<split>/<class>/*.png|jpg``: colour blobs of varied sizes; some grayscale, one palette image."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label, colour in COLOURS.items():
            os.makedirs(os.path.join(root, split, label), exist_ok=True)
            for i in range(n):
                im = blob_image(colour, rng, (int(rng.integers(20, 60)), int(rng.integers(20, 60))))
                if i % 7 == 3:
                    im = im.convert("L")  # grayscale: must become 3 channels
                if i % 11 == 5:
                    im = im.convert("P")
                ext = "jpg" if i % 2 and im.mode != "P" else "png"
                im.save(os.path.join(root, split, label, f"{i:03d}.{ext}"))
    return root


def tone(freq: float, seconds: float, rate: int, rng: np.random.Generator, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.4 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.01, t.shape)
    return np.stack([wave] * channels, axis=1).astype(np.float32) if channels > 1 else wave.astype(np.float32)


def write_audio_folder(root: str, per_class: dict[str, int], seed: int = 0) -> str:
    """``root/<split>/<class>/*.wav|flac``: tones of 0.3..1.6 s at 8, 16, 22.05 or 44.1 kHz, some stereo."""
    rng = np.random.default_rng(seed)
    rates = (8000, 16000, 22050, 44100)
    for split, n in per_class.items():
        for label, freq in TONES.items():
            os.makedirs(os.path.join(root, split, label), exist_ok=True)
            for i in range(n):
                rate = rates[i % len(rates)]
                wave = tone(freq * rng.uniform(0.95, 1.05), rng.uniform(0.3, 1.6), rate, rng, 1 + (i % 3 == 0))
                sf.write(os.path.join(root, split, label, f"{i:03d}.{'flac' if i % 4 == 1 else 'wav'}"), wave, rate)
    return root
