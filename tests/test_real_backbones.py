"""The packaged image, audio and decoder-LM backbones, end to end on real (small) data: they load offline through
their conversions, train, save and reload to the same predictions."""

from __future__ import annotations

import pytest
import torch

from adapters_kit import AdapterTrainer, TrainConfig, load
from adapters_kit.builtin.catalog import DATASETS

pytestmark = pytest.mark.integration


def _train_and_reload(cfg: TrainConfig, inputs: list) -> dict:
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    expected = trainer.classifier().logits(inputs)
    assert torch.allclose(load(cfg.output).logits(inputs), expected, atol=1e-5)
    return metrics


@pytest.mark.parametrize("method, floor", [("probe", 0.85), ("lora", 0.3)])  # chance is 0.1
def test_mobilenet_v2_on_digits(tmp_path, method, floor):
    """300 training images, LoRA for one epoch (19 steps, still warming up): the full set reaches ~0.96 with
    either method (README)."""
    images = DATASETS["digits"].load()["train"]["image"].tolist()[:6]
    metrics = _train_and_reload(TrainConfig(model="mobilenet-v2", data="digits", method=method, max_train_samples=300,
                                            epochs=10 if method == "probe" else 1, output=str(tmp_path / "run")),
                                images)
    assert metrics["test"]["accuracy"] >= floor


@pytest.mark.parametrize("method", ["probe", "lora"])
def test_whisper_encoder_on_spoken_words(tmp_path, method):
    clips = DATASETS["spoken-words"].load()["test"]["audio"].tolist()[:4]
    cfg = TrainConfig(model="whisper-tiny-encoder", data="spoken-words", method=method, epochs=1 if method == "lora"
                      else 10, max_train_samples=60, batch_size=8, output=str(tmp_path / "run"))
    metrics = _train_and_reload(cfg, clips)
    assert metrics["test"]["n"] == 120
    assert 1 <= load(cfg.output).config.audio_seconds <= 3  # settled from the data: espeak words last ~1 s


@pytest.mark.parametrize("method", ["probe", "lora"])
def test_smollm2_trains_with_last_token_pooling(tmp_path, text_files, method):
    cfg = TrainConfig(model="smollm2-135m", data=f"train={text_files['train']},test={text_files['test']}",
                      method=method, epochs=1, max_train_samples=24, batch_size=8, max_length=24,
                      targets="attention", output=str(tmp_path / "run"))
    trainer = AdapterTrainer(cfg)
    assert trainer.cfg.pooling == "last"
    trainer.train()
    texts = ["the match was won by the team", "shares and profit rose"]
    assert torch.allclose(load(cfg.output).logits(texts), trainer.classifier().logits(texts), atol=1e-5)
