"""The packaged real backbone (all-MiniLM-L6-v2) through the whole path, on a small slice of BBC News."""

import pytest
import torch

from adapters_kit import AdapterTrainer, TrainConfig, load

pytestmark = pytest.mark.integration
TEXTS = ["Shares in the bank fell after it reported a loss", "The band's new album tops the charts"]


def test_lora_on_minilm_trains_saves_and_reloads(tmp_path):
    cfg = TrainConfig(model="minilm-l6", data="bbc-news", method="lora", output=str(tmp_path / "run"),
                      max_train_samples=160, epochs=2, max_length=64, batch_size=16)
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    assert metrics["test"]["n"] == 213 and metrics["train"]["train_samples"] == 320
    # 160 examples at 64 tokens already beat chance (0.2) by far with the pretrained encoder
    assert metrics["test"]["accuracy"] > 0.6
    torch.testing.assert_close(load(cfg.output).logits(TEXTS), trainer.classifier().logits(TEXTS), atol=1e-5,
                               rtol=0)

    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    base = AutoModel.from_pretrained(_minilm_path())
    plain = PeftModel.from_pretrained(base, cfg.output).eval()
    batch = AutoTokenizer.from_pretrained(cfg.output)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).last_hidden_state,
                                   trainer.model.backbone(**batch).last_hidden_state, atol=1e-5, rtol=0)


def _minilm_path():
    from adapters_kit.builtin.resolve import resolve_model

    return resolve_model("minilm-l6")[0]
