"""Each method trains exactly its intended parameters; everything else stays bit-identical after a step."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertModel

from adapters_kit import TrainConfig, UserError
from adapters_kit.methods.adapters import ADAPTERS, select_targets
from adapters_kit.model.modeling import build_model
from adapters_kit.train.loop import make_optimizer


def intended(method: str, name: str) -> bool:
    """Which parameter names each method is meant to train (the head always)."""
    if name.startswith("head."):
        return True
    return {"probe": False, "lora": "lora_" in name, "dora": "lora_" in name, "lp-ft": "lora_" in name,
            "ia3": "ia3_" in name, "loha": "hada_" in name, "lokr": "lokr_" in name,
            "full": "pooler" not in name, "unfreeze-top-k": ".layer.1." in name}[method]


@pytest.mark.parametrize("method", [*ADAPTERS.names(), "lp-ft"])  # every adapter strategy, and LP-FT
def test_one_step_changes_exactly_the_intended_parameters(method, tiny_model_dir):
    cfg = TrainConfig(method=method, pooling="mean", unfreeze_k=1, lr=1e-2, lora_dropout=0.0)
    model = build_model(cfg, BertModel.from_pretrained(tiny_model_dir), num_labels=3)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if intended(method, n)}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(["team goal match win", "bank shares profit", "phone chip data"], padding=True, return_tensors="pt")
    opt = make_optimizer(model, cfg.lr, 0.0)
    model.train()
    for _ in range(2):  # two steps: LoRA's B starts at zero, so A only moves from the second step
        F.cross_entropy(model(**batch), torch.tensor([0, 1, 2])).backward()
        opt.step()
        opt.zero_grad()
    for n, p in model.named_parameters():
        if n in names:
            assert not torch.equal(p, before[n]) or p.numel() == 0, f"{method}: {n} did not move"
        else:
            assert torch.equal(p, before[n]), f"{method}: frozen {n} changed"


def test_target_selection_by_type(tiny_model_dir):
    bb = BertModel.from_pretrained(tiny_model_dir)
    attention, mlp = select_targets(bb, "attention"), select_targets(bb, "mlp")
    assert len(attention) == 2 * 4 and len(mlp) == 2 * 2 and not set(attention) & set(mlp)
    assert all(n.endswith(("intermediate.dense", "output.dense")) and "attention" not in n for n in mlp)
    assert select_targets(bb, "query,value") == [n for n in attention if n.endswith(("query", "value"))]
    with pytest.raises(UserError, match="names no linear layer of the backbone: q_proj; block linears are named"):
        select_targets(bb, "q_proj")


@pytest.mark.parametrize("kw,message", [
    ({"method": "lora", "lora_r": 64}, "larger than layer"),
    ({"method": "unfreeze-top-k", "unfreeze_k": 5}, "exceeds the backbone's 2 blocks"),
])
def test_bad_combinations_fail_at_start(tiny_model_dir, kw, message):
    with pytest.raises(UserError, match=message):
        build_model(TrainConfig(pooling="mean", **kw), BertModel.from_pretrained(tiny_model_dir), num_labels=3)


def test_lp_ft_starts_lora_from_the_probed_head(tiny_cfg, tmp_path):
    """With a vanishing fine-tuning lr, LP-FT must predict exactly what the probe stage alone (a probe run) does:
    LoRA's zero-initialised B leaves the features untouched during the probe stage."""
    from adapters_kit import AdapterTrainer

    probe = AdapterTrainer(tiny_cfg(method="probe", lr=1e-2, epochs=3, output=str(tmp_path / "p"))).train()
    lpft = AdapterTrainer(tiny_cfg(method="lp-ft", lr=1e-12, probe_epochs=3, epochs=1, output=str(tmp_path / "l")))
    metrics = lpft.train()
    assert metrics["train"]["probe_stage"]["best_epoch"] == probe["train"]["best_epoch"]
    assert metrics["test"]["confusion_matrix"] == probe["test"]["confusion_matrix"]
    assert metrics["test"]["log_loss"] == pytest.approx(probe["test"]["log_loss"], abs=1e-6)
    assert (tmp_path / "l" / "adapter_model.safetensors").exists()


def test_lp_ft_with_a_full_second_stage(tiny_cfg, tmp_path):
    """The second stage can be full fine-tuning: every backbone weight but the unused pooler trains, from the probed
    head; the run saves the backbone weights (no adapter) and reloads to the same predictions."""
    from adapters_kit import AdapterTrainer, load
    from adapters_kit.methods.adapters import BACKBONE_WEIGHTS

    probe = AdapterTrainer(tiny_cfg(method="probe", lr=1e-2, epochs=3, output=str(tmp_path / "p"))).train()
    trainer = AdapterTrainer(tiny_cfg(method="lp-ft", lp_ft_stage="full", lr=1e-12, probe_epochs=3, epochs=1,
                                      output=str(tmp_path / "l")))
    metrics = trainer.train()
    assert metrics["test"]["confusion_matrix"] == probe["test"]["confusion_matrix"]
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in trainer.model.named_parameters() if intended("full", n)}
    assert (tmp_path / "l" / BACKBONE_WEIGHTS).exists() and not (tmp_path / "l" / "adapter_config.json").exists()
    texts = ["team goal match", "bank shares profit"]
    assert torch.allclose(load(tmp_path / "l").logits(texts), trainer.classifier().logits(texts), atol=1e-6)


def test_adapter_layers_puts_lora_in_the_top_blocks_only_and_stops_backward_there(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(["team goal match", "bank shares profit"], padding=True, return_tensors="pt")
    seen = {}
    for layers, lowest_has_grad in ((0, True), (1, False)):  # 0: every block
        cfg = TrainConfig(method="lora", pooling="mean", adapter_layers=layers)
        model = build_model(cfg, BertModel.from_pretrained(tiny_model_dir), num_labels=3)
        lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
        assert lora and all((".layer.1." in n) or layers == 0 for n in lora)
        assert any(".layer.0." in n for n in lora) == (layers == 0)
        bottom = model.backbone.get_base_model().encoder.layer[0]
        handle = bottom.register_forward_hook(lambda m, args, out: seen.update(grad=out[0].requires_grad))
        F.cross_entropy(model(**batch), torch.tensor([0, 1])).backward()
        handle.remove()
        assert seen["grad"] == lowest_has_grad  # no graph (so no backward) through the frozen bottom block
    with pytest.raises(UserError, match="--adapter-layers 3 exceeds the backbone's 2 blocks"):
        build_model(TrainConfig(method="lora", pooling="mean", adapter_layers=3),
                    BertModel.from_pretrained(tiny_model_dir), num_labels=3)
