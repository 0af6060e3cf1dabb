"""Packaged weights in other formats become transformers checkpoint folders, once, in the cache.

- MobileNetV2 (torchvision ``state_dict``) -> ``MobileNetV2ForImageClassification`` + an ImageNet image processor.
  Key mapping (torchvision -> transformers; ``num_batches_tracked`` dropped; ``mobilenet_v2.`` prefix except the
  classifier): ``features.0.{0,1}`` -> ``conv_stem.first_conv.{convolution,normalization}``;
  ``features.1.conv.0.{0,1}`` -> ``conv_stem.conv_3x3.*``, ``features.1.conv.{1,2}`` ->
  ``conv_stem.reduce_1x1.{convolution,normalization}``; ``features.i.conv.{0,1}.{0,1}`` / ``.conv.{2,3}``
  (i = 2..17) -> ``layer.{i-2}.{expand_1x1,conv_3x3}.*`` / ``layer.{i-2}.reduce_1x1.{convolution,normalization}``;
  ``features.18.{0,1}`` -> ``conv_1x1.*``; ``classifier.1`` -> ``classifier``. The config uses PyTorch padding
  (``tf_padding=False``) and torchvision's BatchNorm eps 1e-5, or the logits would be silently wrong.
- Whisper tiny.en (CTranslate2 ``model.bin``) -> ``WhisperForConditionalGeneration`` + feature extractor +
  tokenizer. CTranslate2 fuses self-attention q|k|v and cross-attention k|v; they are split back (k has no bias).
- SmolLM2 (GGUF) -> a dequantised fp32 Llama checkpoint with its tokenizer (pad token = EOS), since dequantising
  takes ~25 s on every GGUF load.

:func:`cached_conversion` writes each result once into ``$ADAPTERS_KIT_CACHE/models/<name>`` (atomically, under a
file lock, so two processes of one launch never convert twice or see half a folder).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from adapters_kit.runs.atomic import atomic_dir

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
_CONV_BN = {"0": "convolution", "1": "normalization"}


def cache_dir() -> Path:
    return Path(os.environ.get("ADAPTERS_KIT_CACHE", Path.home() / ".cache" / "adapters_kit")) / "models"


def cached_conversion(name: str, convert: Callable[[Path], Any]) -> Path:
    """``cache_dir()/name``, converting into it first if it holds no complete conversion."""
    return cached_build(cache_dir(), name, convert)


def cached_build(root: Path, name: str, build: Callable[[Path], Any]) -> Path:
    """``root/name``, built by ``build(folder)`` first if it is not complete: into a temporary sibling, marked
    complete, then renamed into place, under a file lock, so concurrent processes build once and an interrupted
    build leaves nothing that looks finished."""
    final = root / name
    if (final / ".complete").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():  # another process finished while we waited
            return final
        with atomic_dir(final) as tmp:
            build(tmp)
            (tmp / ".complete").write_text("")
    return final


# ------------------------------------------------------------------------------------------------ MobileNetV2
def tv_to_hf_key(key: str) -> str | None:
    """The transformers name of a torchvision MobileNetV2 ``state_dict`` key (None: not kept)."""
    if key.endswith("num_batches_tracked"):
        return None
    if key.startswith("classifier.1."):
        return "classifier." + key.split(".")[-1]
    index, rest = re.match(r"features\.(\d+)\.(.*)", key).groups()
    i, p = int(index), "mobilenet_v2."
    if i in (0, 18):
        part, param = rest.split(".", 1)
        return p + ("conv_stem.first_conv" if i == 0 else "conv_1x1") + f".{_CONV_BN[part]}.{param}"
    q = rest.split(".")  # conv.X[.Y].param
    if i == 1:
        if q[1] == "0":
            return p + f"conv_stem.conv_3x3.{_CONV_BN[q[2]]}.{q[3]}"
        return p + f"conv_stem.reduce_1x1.{'convolution' if q[1] == '1' else 'normalization'}.{q[-1]}"
    block = p + f"layer.{i - 2}."
    if q[1] in ("0", "1"):
        return block + ("expand_1x1" if q[1] == "0" else "conv_3x3") + f".{_CONV_BN[q[2]]}.{q[3]}"
    return block + f"reduce_1x1.{'convolution' if q[1] == '2' else 'normalization'}.{q[-1]}"


def convert_mobilenet_v2(pth_path: str, out_dir: str | Path) -> Path:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification, MobileNetV2ImageProcessor

    state = torch.load(pth_path, map_location="cpu", weights_only=True)
    cfg = MobileNetV2Config(num_labels=1000, tf_padding=False, layer_norm_eps=1e-5, hidden_act="relu6",
                            image_size=224)
    model = MobileNetV2ForImageClassification(cfg).eval()
    mapped = {tv_to_hf_key(k): v for k, v in state.items() if tv_to_hf_key(k)}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [m for m in missing if "num_batches_tracked" not in m]
    if missing or unexpected:
        raise RuntimeError(f"MobileNetV2 conversion left keys unmatched: {missing[:3]} {unexpected[:3]}")
    model.save_pretrained(str(out_dir))
    MobileNetV2ImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                              image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).save_pretrained(str(out_dir))
    return Path(out_dir)


# ------------------------------------------------------------------------------------------------ Whisper
def read_ct2(path: str) -> dict[str, np.ndarray]:
    """Tensors of a CTranslate2 ``model.bin``: version, name, revision, then (name, rank, dims, dtype, bytes,
    data) per tensor, then aliases. Strings are uint16 length (with NUL) + bytes."""
    buf, offset = open(path, "rb").read(), 0
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}

    def unpack(fmt: str):
        nonlocal offset
        value = struct.unpack_from(fmt, buf, offset)[0]
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        n = unpack("H")
        text = buf[offset:offset + n - 1].decode()
        offset += n
        return text

    unpack("I")
    string()
    unpack("I")
    out = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dt = np.dtype(dtypes[unpack("B")])
        nbytes = unpack("I")
        out[name] = np.frombuffer(buf, dt, nbytes // dt.itemsize, offset).reshape(shape)
        offset += nbytes
    for _ in range(unpack("I")):
        alias = string()
        out[alias] = out[string()]
    return out


def _whisper_state(w: dict[str, np.ndarray], layers: int) -> dict[str, torch.Tensor]:
    def t(key: str) -> torch.Tensor:
        return torch.tensor(np.asarray(w[key]), dtype=torch.float32)

    sd: dict[str, torch.Tensor] = {}

    def norm(dst: str, src: str) -> None:
        sd[dst + ".weight"], sd[dst + ".bias"] = t(src + "/gamma"), t(src + "/beta")

    def linear(dst: str, src: str) -> None:
        sd[dst + ".weight"], sd[dst + ".bias"] = t(src + "/weight"), t(src + "/bias")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    norm(f"{enc}.layer_norm", "encoder/layer_norm")
    sd[f"{enc}.embed_positions.weight"] = t("encoder/position_encodings/encodings")
    for side, prefix in (("encoder", enc), ("decoder", dec)):
        for i in range(layers):
            s, d = f"{side}/layer_{i}", f"{prefix}.layers.{i}"
            weights = t(f"{s}/self_attention/linear_0/weight").chunk(3)
            biases = t(f"{s}/self_attention/linear_0/bias").chunk(3)
            for j, proj in enumerate("qkv"):
                sd[f"{d}.self_attn.{proj}_proj.weight"] = weights[j]
                if proj != "k":  # Whisper's k_proj has no bias (CT2 stores zeros)
                    sd[f"{d}.self_attn.{proj}_proj.bias"] = biases[j]
            linear(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
            norm(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
            linear(f"{d}.fc1", f"{s}/ffn/linear_0")
            linear(f"{d}.fc2", f"{s}/ffn/linear_1")
            norm(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
            if side == "decoder":
                norm(f"{d}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
                linear(f"{d}.encoder_attn.q_proj", f"{s}/attention/linear_0")
                kv_w, kv_b = t(f"{s}/attention/linear_1/weight").chunk(2), t(f"{s}/attention/linear_1/bias").chunk(2)
                sd[f"{d}.encoder_attn.k_proj.weight"] = kv_w[0]
                sd[f"{d}.encoder_attn.v_proj.weight"], sd[f"{d}.encoder_attn.v_proj.bias"] = kv_w[1], kv_b[1]
                linear(f"{d}.encoder_attn.out_proj", f"{s}/attention/linear_2")
    sd[f"{dec}.embed_tokens.weight"] = t("decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = t("decoder/position_encodings/encodings")
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    sd["proj_out.weight"] = t("decoder/projection/weight")
    return sd


def convert_whisper_tiny(model_dir: str, out_dir: str | Path) -> Path:
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    w = read_ct2(os.path.join(model_dir, "model.bin"))
    cfg = WhisperConfig(vocab_size=51864, num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4,
                        encoder_attention_heads=6, decoder_attention_heads=6, encoder_ffn_dim=1536,
                        decoder_ffn_dim=1536, max_source_positions=1500, max_target_positions=448, pad_token_id=50256,
                        bos_token_id=50256, eos_token_id=50256, decoder_start_token_id=50257)
    model = WhisperForConditionalGeneration(cfg).eval()
    missing, unexpected = model.load_state_dict(_whisper_state(w, 4), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"Whisper conversion left keys unmatched: {missing[:3]} {unexpected[:3]}")
    model.save_pretrained(str(out_dir))
    WhisperFeatureExtractor(feature_size=80).save_pretrained(str(out_dir))
    WhisperTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json")).save_pretrained(str(out_dir))
    return Path(out_dir)


# ------------------------------------------------------------------------------------------------ SmolLM2
def convert_smollm2(gguf_dir: str, gguf_file: str, out_dir: str | Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    # The weights are already dequantised to fp32; drop the GGUF marker so they save as a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    return Path(out_dir)
