"""Packaged weights converted to transformers: exact against an independent implementation, cached once."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adapters_kit.builtin.catalog import MODELS
from adapters_kit.builtin.convert import cached_conversion, tv_to_hf_key


def test_torchvision_keys_map_to_transformers_names():
    assert tv_to_hf_key("features.0.0.weight") == "mobilenet_v2.conv_stem.first_conv.convolution.weight"
    assert tv_to_hf_key("features.0.1.running_var") == "mobilenet_v2.conv_stem.first_conv.normalization.running_var"
    assert tv_to_hf_key("features.1.conv.0.1.running_mean") == \
        "mobilenet_v2.conv_stem.conv_3x3.normalization.running_mean"
    assert tv_to_hf_key("features.1.conv.1.weight") == "mobilenet_v2.conv_stem.reduce_1x1.convolution.weight"
    assert tv_to_hf_key("features.1.conv.2.bias") == "mobilenet_v2.conv_stem.reduce_1x1.normalization.bias"
    assert tv_to_hf_key("features.5.conv.0.0.weight") == "mobilenet_v2.layer.3.expand_1x1.convolution.weight"
    assert tv_to_hf_key("features.5.conv.1.1.weight") == "mobilenet_v2.layer.3.conv_3x3.normalization.weight"
    assert tv_to_hf_key("features.5.conv.3.weight") == "mobilenet_v2.layer.3.reduce_1x1.normalization.weight"
    assert tv_to_hf_key("features.18.1.bias") == "mobilenet_v2.conv_1x1.normalization.bias"
    assert tv_to_hf_key("classifier.1.weight") == "classifier.weight"
    assert tv_to_hf_key("features.3.conv.1.1.num_batches_tracked") is None


def test_conversion_happens_once_and_never_leaves_half_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERS_KIT_CACHE", str(tmp_path))
    calls = []

    def convert(out):
        calls.append(out)
        (out / "config.json").write_text("{}")
        return out

    first = cached_conversion("m", convert)
    assert cached_conversion("m", convert) == first and len(calls) == 1
    assert (first / "config.json").read_text() == "{}"

    def broken(out):
        (out / "partial").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        cached_conversion("b", broken)
    assert not (tmp_path / "models" / "b").exists()
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.startswith(".")] == ["m"]
    assert not [p for p in (tmp_path / "models").iterdir() if ".tmp-" in p.name]
    assert cached_conversion("b", convert).name == "b" and len(calls) == 2


def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        False, 0.0, 1e-5)


def torchvision_mobilenet_v2(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's mobilenet_v2 forward, written out from the paper's table (inverted residual blocks)."""
    def conv_bn_relu(h, p, stride=1, groups=1):
        w = sd[p + ".0.weight"]
        return F.relu6(_bn(F.conv2d(h, w, stride=stride, padding=(w.shape[-1] - 1) // 2, groups=groups), sd, p + ".1"))

    x = conv_bn_relu(x, "features.0", stride=2)
    index, channels = 1, 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            stride, p = (s if i == 0 else 1), f"features.{index}.conv"
            h, j = x, 0
            if t != 1:
                h, j = conv_bn_relu(h, f"{p}.0"), 1
            h = conv_bn_relu(h, f"{p}.{j}", stride=stride, groups=h.shape[1])
            h = _bn(F.conv2d(h, sd[f"{p}.{j + 1}.weight"]), sd, f"{p}.{j + 2}")
            x = x + h if stride == 1 and channels == c else h
            channels, index = c, index + 1
    x = conv_bn_relu(x, "features.18").mean((2, 3))
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


@pytest.mark.integration
def test_mobilenet_v2_conversion_is_exact():
    from transformers import MobileNetV2ForImageClassification

    root = MODELS["mobilenet-v2"].root()
    sd = torch.load(os.path.join(root, "weights", "mobilenet_v2-b0353104.pth"), map_location="cpu", weights_only=True)
    model = MobileNetV2ForImageClassification.from_pretrained(MODELS["mobilenet-v2"].path()).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, reference = model(pixel_values=x).logits, torchvision_mobilenet_v2(sd, x)
    assert ours.shape == (2, 1000)
    assert (ours - reference).abs().max() < 1e-4


@pytest.mark.integration
def test_whisper_conversion_transcribes_speech(tmp_path):
    """The converted model (encoder and decoder) hears espeak-ng's sentence: greedy decoding gets the words."""
    import soundfile as sf
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from adapters_kit.data.media import read_audio

    path = MODELS["whisper-tiny-encoder"].path()
    wav = tmp_path / "fox.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "The quick brown fox jumps over the lazy dog."],
                   check=True)
    assert sf.info(str(wav)).samplerate == 22050
    proc = WhisperProcessor.from_pretrained(path)
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    feats = proc(read_audio(str(wav), 16000), sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape == (1, 80, 3000)
    ids = torch.tensor([[50257, 50362]])  # <|startoftranscript|><|notimestamps|>
    with torch.no_grad():
        encoded = model.model.encoder(feats).last_hidden_state
        assert encoded.shape == (1, 1500, 384) and torch.isfinite(encoded).all()
        for _ in range(20):
            nxt = model(input_features=feats, decoder_input_ids=ids).logits[0, -1].argmax().view(1, 1)
            ids = torch.cat([ids, nxt], 1)
            if nxt.item() == 50256:
                break
    text = proc.tokenizer.decode(ids[0], skip_special_tokens=True).lower()
    assert "quick brown fox" in text and "over the lazy" in text  # espeak's "dog" is heard as "nog" at times


@pytest.mark.integration
def test_smollm2_becomes_a_sequence_classifier_with_a_pad_token():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = MODELS["smollm2-135m"].path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    assert tok.pad_token is not None and model.config.pad_token_id == tok.pad_token_id
    batch = tok(["great movie", "a terrible, boring and far too long film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 2) and np.isfinite(logits.numpy()).all()
