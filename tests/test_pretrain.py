"""Autoencoder pretraining: the corruption, the reconstruction losses against independent computations, only the
adapter (and the throw-away decoder) learning, and the whole method from data to a reloadable run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, BertModel

from adapters_kit import AdapterTrainer, TrainConfig, UserError, load
from adapters_kit.methods import validate
from adapters_kit.methods.autoencoder import Denoiser, Reconstruction, choose, denoiser_for, low_resolution
from adapters_kit.model.modeling import build_model
from adapters_kit.train.loop import train as train_loop
from tests.conftest import write_csv
from tests.modality_fixtures import build_family

TEXTS = ["team goal match win the", "bank shares profit market", "phone chip data software the report", "goal"]


def _tokens(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tok, dict(tok(TEXTS, padding=True, return_tensors="pt"))


def test_choose_picks_the_ratio_of_eligible_positions_at_least_one():
    torch.manual_seed(0)
    eligible = torch.ones(2, 20, dtype=torch.bool)
    eligible[1, 3:] = False  # a short row: 3 eligible tokens
    chosen = choose(eligible, 0.15)
    assert chosen.sum(1).tolist() == [3, 1]  # round(0.15 * 20) = 3; round(0.45) = 0 -> at least one
    assert not (chosen & ~eligible).any()
    assert choose(torch.zeros(2, 20, dtype=torch.bool), 0.15).sum() == 0


def test_masked_token_loss_equals_an_independent_computation(tiny_model_dir):
    tok, batch = _tokens(tiny_model_dir)
    model = build_model(TrainConfig(method="lora", pooling="mean", lora_dropout=0.0),
                        BertModel.from_pretrained(tiny_model_dir), 3).eval()
    denoiser = Denoiser(model, batch, tok).eval()
    seen = {}
    embeddings = model.backbone.get_input_embeddings()
    handle = embeddings.register_forward_pre_hook(lambda m, args: seen.update(ids=args[0].clone()))
    torch.manual_seed(3)
    loss = denoiser(**batch)
    handle.remove()
    ids, corrupted = batch["input_ids"], seen["ids"]
    chosen = corrupted != ids
    real = batch["attention_mask"].bool() & ~torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert (corrupted[chosen] == tok.mask_token_id).all() and not (chosen & ~real).any()
    assert chosen.sum(1).tolist() == [max(1, round(0.15 * n)) for n in real.sum(1).tolist()]
    with torch.no_grad():  # the expected loss, from the corrupted ids the backbone saw
        hidden = model.backbone(input_ids=corrupted, attention_mask=batch["attention_mask"],
                                token_type_ids=batch["token_type_ids"]).last_hidden_state
        logits = F.linear(denoiser.decoder(hidden[chosen]), embeddings.weight, denoiser.bias)
        expected = F.cross_entropy(logits, ids[chosen])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_low_resolution_targets():
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(low_resolution(x), x.view(2, 3, 16, 2, 16, 2).mean((3, 5)), atol=1e-6)
    spec = torch.randn(2, 5, 64)
    assert torch.allclose(low_resolution(spec), spec.view(2, 5, 32, 2).mean(3), atol=1e-6)
    wave = torch.randn(2, 640)
    assert torch.allclose(low_resolution(wave), wave.abs().view(2, 1, 64, 10).mean(3), atol=1e-6)


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    return build_family("vit", str(tmp_path_factory.mktemp("vit")))


def test_masked_patch_blanks_half_the_cells_and_scores_only_them(vit_dir):
    model = build_model(TrainConfig(method="lora", pooling="cls", lora_dropout=0.0, lora_r=2),
                        AutoModel.from_pretrained(vit_dir), 3).eval()
    x = torch.randn(2, 3, 32, 32)
    denoiser = Denoiser(model, {"pixel_values": x}).eval()
    seen = {}
    handle = model.backbone.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(x=kwargs["pixel_values"].clone()), with_kwargs=True)
    torch.manual_seed(5)
    loss = denoiser(pixel_values=x)
    handle.remove()
    cells = (seen["x"] == 0).view(2, 3, 8, 4, 8, 4).all(5).all(3).all(1)  # an 8 x 8 grid of 4 x 4 pixel cells
    assert cells.sum((1, 2)).tolist() == [32, 32]  # half of the 64 cells per image
    kept = ~cells.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].expand_as(x)
    assert torch.equal(seen["x"][kept], x[kept])
    with torch.no_grad():
        predicted = denoiser.decoder(model.features(pixel_values=seen["x"])).view(2, 3, 16, 16)
        target = x.view(2, 3, 16, 2, 16, 2).mean((3, 5))
        scored = cells.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, None].expand_as(target)
        expected = ((predicted - target)[scored] ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_stage_trains_only_the_adapter_and_lowers_the_loss(tiny_model_dir):
    tok, batch = _tokens(tiny_model_dir)
    cfg = TrainConfig(method="autoencoder-pretrain", pooling="mean", lora_dropout=0.0, lr=2e-2, pretrain_epochs=25,
                      warmup_ratio=0.0)
    model = build_model(cfg, BertModel.from_pretrained(tiny_model_dir), 3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = [{k: v[i] for k, v in batch.items()} for i in range(len(TEXTS))]
    loader = torch.utils.data.DataLoader(rows, batch_size=2)
    denoiser = denoiser_for(model, loader, tok, cfg)
    stage = cfg.replace(epochs=cfg.pretrain_epochs)  # the stage runs through the training loop, as in a run
    result = train_loop(stage, denoiser, loader, {}, Accelerator(cpu=True), [], objective=Reconstruction())
    losses = result.epoch_losses
    assert len(losses) == 25 and denoiser.text
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5])  # from about log(vocabulary size) down
    for n, p in model.named_parameters():
        if "lora_" in n:
            assert not torch.equal(p, before[n]), f"{n} did not learn"
        else:
            assert torch.equal(p, before[n]), f"{n} changed, but only the adapter may"


def test_autoencoder_pretrain_run_saves_the_adapter_and_reloads_identically(tiny_cfg, tmp_path):
    unlabelled = write_csv(tmp_path / "unlabelled.csv", [(t,) for t in TEXTS * 5], header=("text",))
    cfg = tiny_cfg(method="autoencoder-pretrain", pretrain_data=unlabelled, pretrain_epochs=2, lora_dropout=0.0,
                   epochs=1, output=str(tmp_path / "ae"))
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    stage = metrics["train"]["pretrain_stage"]
    assert stage["examples"] == 20 and len(stage["reconstruction_loss"]) == 2
    plain = AdapterTrainer(tiny_cfg(method="lora", lora_dropout=0.0, epochs=1, output=str(tmp_path / "lora")))
    plain.train()
    ae_weights = load_file(tmp_path / "ae" / "adapter_model.safetensors")
    lora_weights = load_file(tmp_path / "lora" / "adapter_model.safetensors")
    assert ae_weights.keys() == lora_weights.keys()  # the same adapter; the decoder is not saved
    assert any(not torch.equal(ae_weights[k], lora_weights[k]) for k in ae_weights)  # the stage carried over
    saved = json.loads((tmp_path / "ae" / "train_config.json").read_text())
    assert saved["method"] == "autoencoder-pretrain" and saved["adapter"] == "lora"
    texts = ["team goal match", "profit bank shares"]
    assert torch.allclose(load(cfg.output).logits(texts), trainer.classifier().logits(texts), atol=1e-5)
    assert "denoising autoencoder" in (tmp_path / "ae" / "README.md").read_text()


@pytest.mark.parametrize("kw,message", [
    ({"method": "autoencoder-pretrain", "adapter": "probe"}, "--adapter probe cannot be trained by"),
    ({"method": "autoencoder-pretrain", "mask_ratio": 1.5}, "mask_ratio must be in (0, 1)"),
    ({"method": "autoencoder-pretrain", "pretrain_epochs": 0}, "pretrain_epochs must be a positive integer"),
])
def test_bad_settings_fail_at_start(kw, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(TrainConfig(**kw))


def test_the_tiny_tokenizer_knows_its_words(tiny_model_dir):
    """The fixture's vocabulary is real (tests that learn from texts need words, not unknown tokens)."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.unk_token_id not in tok("team goal profit chip the")["input_ids"]
