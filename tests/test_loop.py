"""The training loop's arithmetic: same seed -> same run; gradient accumulation == a larger batch."""

import json

import pytest
import torch

from adapters_kit import AdapterTrainer
from adapters_kit.evaluation.evaluator import SPEED_KEYS


def scored(metrics):
    return {s: {k: v for k, v in m.items() if k not in SPEED_KEYS} for s, m in metrics.items() if s != "train"}


def test_same_seed_and_config_give_identical_metrics(tiny_cfg, tmp_path):
    a = AdapterTrainer(tiny_cfg(method="lora", output=str(tmp_path / "a"))).train()
    b = AdapterTrainer(tiny_cfg(method="lora", output=str(tmp_path / "b"))).train()
    assert scored(a) == scored(b)
    c = AdapterTrainer(tiny_cfg(method="lora", output=str(tmp_path / "c"), seed=7)).train()
    assert scored(c) != scored(a)  # the seed matters, so the equality above is not vacuous


@pytest.fixture
def no_dropout_model(tmp_path, tiny_model_dir):
    """The tiny BERT with its dropout off, so batch composition is the only thing that could differ."""
    import shutil

    from transformers import BertModel

    d = tmp_path / "tiny-nodrop"
    shutil.copytree(tiny_model_dir, d)
    model = BertModel.from_pretrained(str(d), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.save_pretrained(str(d))
    return str(d)


def test_gradient_accumulation_equals_the_larger_batch(tiny_cfg, no_dropout_model, tmp_path):
    common = dict(model=no_dropout_model, method="lora", lora_dropout=0.0, head_dropout=0.0, max_train_samples=64,
                  epochs=2)
    whole = AdapterTrainer(tiny_cfg(**common, batch_size=8, output=str(tmp_path / "b8")))
    whole.train()
    accum = AdapterTrainer(tiny_cfg(**common, batch_size=4, grad_accum_steps=2, output=str(tmp_path / "b4x2")))
    accum.train()
    a = {n: p for n, p in whole.model.named_parameters() if p.requires_grad}
    b = {n: p for n, p in accum.model.named_parameters() if p.requires_grad}
    assert a.keys() == b.keys() and len(a) > 2
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=name)
    # and training moved them: the LoRA B matrices start at zero
    assert any(p.abs().sum() > 0 for n, p in a.items() if "lora_B" in n)


def test_layer_decay_scales_each_block_below_the_head(tiny_model_dir):
    from transformers import BertModel

    from adapters_kit import TrainConfig
    from adapters_kit.model.modeling import build_model
    from adapters_kit.train.loop import make_optimizer

    cfg = TrainConfig(method="full", pooling="mean")
    model = build_model(cfg, BertModel.from_pretrained(tiny_model_dir), num_labels=3)
    opt = make_optimizer(model, lr=1.0, weight_decay=0.01, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    # 2 blocks: embeddings 0.5^3, block 0 0.5^2, block 1 0.5, head 1
    assert lr_of[id(named["backbone.embeddings.word_embeddings.weight"])] == 0.125
    assert lr_of[id(named["backbone.encoder.layer.0.attention.self.query.weight"])] == 0.25
    assert lr_of[id(named["backbone.encoder.layer.1.output.dense.bias"])] == 0.5
    assert lr_of[id(named["head.1.weight"])] == 1.0
    assert "backbone.pooler.dense.weight" not in {n for n, p in named.items() if id(p) in lr_of}  # frozen
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(named["head.1.weight"])] == 0.01 and decay[id(named["head.1.bias"])] == 0.0
    plain = make_optimizer(model, lr=1.0, weight_decay=0.01)
    assert {g["lr"] for g in plain.param_groups} == {1.0}


def test_full_with_layer_decay_trains(tiny_cfg, tmp_path):
    from adapters_kit import AdapterTrainer

    metrics = AdapterTrainer(tiny_cfg(method="full", layer_decay=0.7, epochs=1,
                                      output=str(tmp_path / "run"))).train()
    assert metrics["test"]["n"] > 0


def test_report_to_tensorboard_logs_train_and_validation_scalars(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from adapters_kit import AdapterTrainer
    from adapters_kit.runs.checkpoint import tracker_dir

    out = tmp_path / "run"
    AdapterTrainer(tiny_cfg(method="lora", epochs=2, report_to="tensorboard", output=str(out))).train()
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events and not tracker_dir(out).exists()  # moved into the run folder
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "validation/accuracy", "validation/f1_macro", "test/accuracy"} <= tags
    history = json.loads((out / "run_info.json").read_text())["history"]
    logged = [(e.step, e.value) for e in acc.Scalars("validation/accuracy")]
    # one point per evaluation (as run_info.json's history), then the final metrics at the best step
    assert [(h["global_step"], pytest.approx(h["accuracy"])) for h in history if h["split"] == "validation"] == \
        logged[:-1]
    assert len(acc.Scalars("train/loss")) >= 2


def test_report_to_names_must_be_known(tiny_cfg, tmp_path):
    from adapters_kit import AdapterTrainer, UserError

    with pytest.raises(UserError, match="unknown --report-to tracker 'tensorbord'; choose from: aim, tensorboard"):
        AdapterTrainer(tiny_cfg(report_to="tensorbord", output=str(tmp_path / "run")))


def test_max_steps_stops_mid_epoch_with_the_schedule_laid_out_over_those_steps(tiny_cfg, tmp_path):
    trainer = AdapterTrainer(tiny_cfg(method="lora", epochs=3, max_steps=4, batch_size=8, warmup_ratio=0.0,
                                      output=str(tmp_path / "m")))
    metrics = trainer.train()
    assert metrics["train"]["train_samples"] == 4 * 8
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["train"]["best_step"] == 4
    log = [json.loads(line) for line in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()]
    assert log and log[-1]["global_step"] == 4
    assert log[-1]["lr"] == pytest.approx(0.0)  # linear decay reaches zero at the last of the 4 steps


def test_tokens_per_second_counts_the_real_tokens_of_every_epoch(tiny_cfg, tmp_path):
    from transformers import AutoTokenizer

    from adapters_kit.data.splits import load_splits
    from adapters_kit.modalities import get_modality

    cfg = tiny_cfg(method="lora", epochs=2, output=str(tmp_path / "t"))
    train = AdapterTrainer(cfg).train()["train"]
    texts = list(load_splits(cfg, get_modality("text", cfg)).datasets["train"]["input"])
    tok = AutoTokenizer.from_pretrained(cfg.model)
    real = sum(len(ids) for ids in tok(texts, truncation=True, max_length=cfg.max_length)["input_ids"])
    assert train["tokens_per_second"] * train["train_seconds"] == pytest.approx(2 * real)
    assert train["samples_per_second"] * train["train_seconds"] == pytest.approx(2 * len(texts))
