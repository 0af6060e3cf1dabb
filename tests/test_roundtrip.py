"""train -> save -> reload -> predict, for every method, on a tiny random BERT."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapters_kit import AdapterTrainer, UserError, load
from adapters_kit.adapters import ADAPTERS
from tests.conftest import make_texts

PROBE_TEXTS = [t for t, _ in make_texts(4, seed=9)]
RUN_FILES = {"head.safetensors", "labels.json", "train_config.json", "run_info.json", "metrics.json",
             "train_log.jsonl", "tokenizer.json", "tokenizer_config.json"}
ADAPTER_FILES = {"lora": {"adapter_config.json", "adapter_model.safetensors"}, "probe": set()}


@pytest.fixture(scope="module", params=ADAPTERS.names())
def trained(request, tiny_model_dir, tmp_path_factory):
    from tests.conftest import write_csv

    d = tmp_path_factory.mktemp(request.param)
    train = write_csv(d / "train.csv", make_texts(30, seed=1))
    test = write_csv(d / "test.csv", make_texts(6, seed=2))
    from adapters_kit import TrainConfig

    cfg = TrainConfig(model=tiny_model_dir, data=f"train={train},test={test}", method=request.param,
                      output=str(d / "run"), epochs=3, batch_size=8, max_length=32, lr=5e-3)
    torch.manual_seed(123)
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    return request.param, trainer, metrics, Path(cfg.output)


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
    from adapters_kit.heads import build_head

    torch.manual_seed(trainer.cfg.seed)  # the seed build_model used: same init draw as the run
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


def test_plain_peft_loads_the_adapter(trained, tiny_model_dir):
    method, trainer, _, out = trained
    if method != "lora":
        pytest.skip("only LoRA runs carry a PEFT adapter")
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
