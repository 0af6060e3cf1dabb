"""train -> save -> reload -> predict, for every method, on a tiny random BERT."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapters_kit import AdapterTrainer, UserError, load
from adapters_kit.methods.adapters import ADAPTERS
from tests.conftest import make_texts

PROBE_TEXTS = [t for t, _ in make_texts(4, seed=9)]
RUN_FILES = {"head.safetensors", "labels.json", "train_config.json", "run_info.json", "metrics.json",
             "train_log.jsonl", "tokenizer.json", "tokenizer_config.json"}
PEFT_FILES = {"adapter_config.json", "adapter_model.safetensors"}
ADAPTER_FILES = {"lora": PEFT_FILES, "dora": PEFT_FILES, "ia3": PEFT_FILES, "lp-ft": PEFT_FILES, "probe": set(),
                 "loha": PEFT_FILES, "lokr": PEFT_FILES,
                 "unfreeze-top-k": {"backbone_trainable.safetensors"}, "full": {"backbone_trainable.safetensors"}}


_RUNS: dict = {}


def train_tiny(method, model_dir, tmp_path_factory):
    """One tiny training run per method, shared by every test of this module."""
    if method not in _RUNS:
        from adapters_kit import TrainConfig
        from tests.conftest import write_csv

        d = tmp_path_factory.mktemp(method)
        train = write_csv(d / "train.csv", make_texts(30, seed=1))
        test = write_csv(d / "test.csv", make_texts(6, seed=2))
        cfg = TrainConfig(model=model_dir, data=f"train={train},test={test}", method=method,
                          output=str(d / "run"), epochs=3, batch_size=8, max_length=32, lr=5e-3)
        trainer = AdapterTrainer(cfg)
        metrics = trainer.train()
        _RUNS[method] = (method, trainer, metrics, Path(cfg.output))
    return _RUNS[method]


@pytest.fixture(params=[*ADAPTERS.names(), "lp-ft"])  # every adapter strategy, and LP-FT
def trained(request, tiny_model_dir, tmp_path_factory):
    return train_tiny(request.param, tiny_model_dir, tmp_path_factory)


@pytest.fixture
def lora_run(tiny_model_dir, tmp_path_factory):
    return train_tiny("lora", tiny_model_dir, tmp_path_factory)


def test_run_folder_contents(trained):
    method, _, _, out = trained
    names = {p.name for p in out.iterdir()}
    assert RUN_FILES | ADAPTER_FILES[method] <= names
    assert not any(n.startswith(".") for n in {p.name for p in out.parent.iterdir()}), "temp folders left over"
    labels = json.loads((out / "labels.json").read_text())
    assert labels["id2label"] == {"0": "business", "1": "sport", "2": "tech"}
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["method"] == method and cfg["pooling"] == "mean" and cfg["lr"] == 5e-3


def test_metrics_json_has_every_key(trained):
    _, _, metrics, out = trained
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for split in ("validation", "test"):
        assert {"accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
                "per_class", "confusion_matrix"} <= set(saved[split])
        assert sum(map(sum, saved[split]["confusion_matrix"])) == saved[split]["n"]
    assert saved["train"]["train_samples"] > 0 and saved["train"]["samples_per_second"] > 0


def test_reload_gives_identical_logits(trained):
    _, trainer, _, out = trained
    in_memory = trainer.classifier().logits(PROBE_TEXTS)
    reloaded = load(out).logits(PROBE_TEXTS)
    torch.testing.assert_close(reloaded, in_memory, atol=1e-5, rtol=0)


def test_head_trained_away_from_initialisation(trained, tiny_model_dir):
    _, trainer, _, out = trained
    from adapters_kit.model.heads import build_head

    torch.manual_seed(trainer.cfg.seed)  # build_model draws the head from this seed alone
    saved = load_file(str(out / "head.safetensors"))
    fresh = build_head("linear", 32, 3).state_dict()
    assert saved.keys() == fresh.keys()
    assert not torch.allclose(saved["1.weight"], fresh["1.weight"])
    assert (saved["1.weight"] - fresh["1.weight"]).abs().max() > 1e-3


def test_predictions_are_labels_with_scores(trained):
    _, _, _, out = trained
    clf = load(out)
    one = clf("team goal match win")
    assert len(one) == 1 and one[0]["label"] in {"business", "sport", "tech"} and 0 < one[0]["score"] <= 1
    many = clf(PROBE_TEXTS[:3], top_k=3)
    assert [len(r) for r in many] == [3, 3, 3]
    assert all(abs(sum(x["score"] for x in r) - 1) < 1e-5 for r in many)


def test_plain_peft_loads_the_adapter(lora_run, tiny_model_dir):
    _, trainer, _, out = lora_run
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    base = AutoModel.from_pretrained(tiny_model_dir)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    batch = AutoTokenizer.from_pretrained(str(out))(PROBE_TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = trainer.model.backbone(**batch).last_hidden_state
        plain = peft_model(**batch).last_hidden_state
    torch.testing.assert_close(plain, ours, atol=1e-5, rtol=0)
    # and the LoRA weights really moved: B starts at zero
    lora_b = [v for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and all(v.abs().max() > 0 for v in lora_b)


def test_existing_run_is_refused_without_overwrite(trained):
    _, trainer, _, out = trained
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match="already holds a run; pass --overwrite"):
        AdapterTrainer(trainer.cfg).train()
    assert sorted(p.name for p in out.iterdir()) == before


def test_same_seed_gives_identical_runs(tiny_cfg, tmp_path):
    runs = [AdapterTrainer(tiny_cfg(method="lora", output=str(tmp_path / n), seed=3)) for n in ("a", "b")]
    from adapters_kit.evaluation.evaluator import SPEED_KEYS

    metrics = [t.train() for t in runs]
    for split in ("validation", "test"):
        a, b = ({k: v for k, v in m[split].items() if k not in SPEED_KEYS} for m in metrics)
        assert a == b and a["n"] > 0
    heads = [load_file(str(tmp_path / n / "head.safetensors")) for n in ("a", "b")]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    loras = [load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in ("a", "b")]
    assert all(torch.equal(loras[0][k], loras[1][k]) for k in loras[0])


def test_bf16_autocast_and_accumulation_train(tiny_cfg, tmp_path):
    trainer = AdapterTrainer(tiny_cfg(method="lora", mixed_precision="bf16", grad_accum_steps=2, epochs=1))
    metrics = trainer.train()
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.accelerator.gradient_accumulation_steps == 2
    assert metrics["test"]["n"] > 0
    log = [json.loads(line) for line in (Path(trainer.cfg.output) / "train_log.jsonl").read_text().splitlines()]
    assert log and all(r["loss"] == r["loss"] for r in log)  # finite, not NaN
