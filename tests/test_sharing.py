"""A run's artefacts loaded the stock ways a new user tries: correct, or a loud error; never a random head.

The merged export through transformers' auto classes and ``pipeline`` (with and without ``trust_remote_code``), and
the PEFT adapter of a run folder and of a pushed run through PEFT's own loaders and the snippet the Hub would show.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapters_kit import load
from adapters_kit.share.export import export_run
from tests import hub_standin
from tests.test_roundtrip import train_tiny

TEXTS = ["team goal match win", "market shares profit bank economy today and the report says growth",
         "phone chip data users"]
ROOT = Path(__file__).parents[1]
NEEDS_CODE = "contains custom code which must be executed to correctly load the model"
# huggingface.js (packages/tasks/src/model-libraries-snippets.ts, `peft`): the Hub writes
# `AutoModelFor<X>.from_pretrained(base)` + `PeftModel.from_pretrained(base_model, repo)` for these task types only,
# and "Task type is invalid." for any other.
HUB_PEFT_SNIPPET = {"CAUSAL_LM": "CausalLM", "SEQ_2_SEQ_LM": "Seq2SeqLM", "TOKEN_CLS": "TokenClassification",
                    "SEQ_CLS": "SequenceClassification"}


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    return train_tiny("lora", tiny_model_dir, tmp_path_factory)[3]


@pytest.fixture(scope="module")
def merged(lora_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "merged"
    export_run(lora_run, "merged", out)
    return out


@pytest.fixture
def no_terminal(monkeypatch, tmp_path):
    """A user who cannot answer transformers' trust_remote_code question (a script, a job): stdin is at its end.
    The custom code is imported from a fresh modules cache."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))


def stock_loaders(folder: str) -> dict:
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline

    return {"AutoModelForSequenceClassification": lambda: AutoModelForSequenceClassification.from_pretrained(folder),
            "AutoModel": lambda: AutoModel.from_pretrained(folder),
            "AutoConfig": lambda: AutoConfig.from_pretrained(folder),
            "pipeline": lambda: pipeline("text-classification", model=folder),
            "explicitly untrusted": lambda: AutoModelForSequenceClassification.from_pretrained(
                folder, trust_remote_code=False)}


@pytest.mark.parametrize("how", ["AutoModelForSequenceClassification", "AutoModel", "AutoConfig", "pipeline",
                                 "explicitly untrusted"])
def test_merged_without_trust_remote_code_is_refused(merged, no_terminal, how):
    with pytest.raises(ValueError, match=NEEDS_CODE) as error:
        stock_loaders(str(merged))[how]()
    assert "Please pass the argument `trust_remote_code=True`" in str(error.value)


def test_merged_with_trust_remote_code_reproduces_the_run(lora_run, merged, no_terminal):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    ref = load(lora_run)
    model = AutoModelForSequenceClassification.from_pretrained(str(merged), trust_remote_code=True).eval()
    assert type(model).__name__ == "AdaptersKitClassifier" and model.config.model_type == "adapters_kit"
    assert model.config.problem_type == ref.run.task().problem_type == "single_label_classification"
    batch = AutoTokenizer.from_pretrained(str(merged), trust_remote_code=True)(TEXTS, padding=True,
                                                                              return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(model(**batch).logits, ref.logits(TEXTS), atol=1e-4, rtol=0)
    got = pipeline("text-classification", model=str(merged), trust_remote_code=True)(TEXTS)
    want = ref(TEXTS)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-4)


def test_merged_config_keeps_no_training_machine_path(merged, tiny_model_dir):
    config = json.loads((merged / "config.json").read_text())
    assert config["model_type"] == "adapters_kit" and config["backbone_config"]["model_type"] == "bert"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForSequenceClassification"}
    assert tiny_model_dir not in (merged / "config.json").read_text()


def peft_logits(peft_model, run: Path, texts: list[str]) -> torch.Tensor:
    """The run's pooling (mean over real tokens) and linear head on a PEFT model's hidden states."""
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(str(run))(texts, padding=True, return_tensors="pt")
    head = load_file(str(run / "head.safetensors"))
    with torch.inference_mode():
        hidden = peft_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)) @ head["1.weight"].T + head["1.bias"]


def check_peft_loaders(run: Path, reference: torch.Tensor) -> None:
    """PEFT's loaders on a run folder: the feature-extraction ones rebuild the adapted backbone exactly; those for
    a whole model refuse with PEFT's task-type error; the Hub shows no snippet that would build a stock head."""
    from peft import AutoPeftModel, AutoPeftModelForFeatureExtraction, AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoModel

    config = json.loads((run / "adapter_config.json").read_text())
    assert config["task_type"] == "FEATURE_EXTRACTION" and config["task_type"] not in HUB_PEFT_SNIPPET
    auto = AutoPeftModelForFeatureExtraction.from_pretrained(str(run)).eval()
    torch.testing.assert_close(peft_logits(auto, run, TEXTS), reference, atol=1e-5, rtol=0)
    plain = PeftModel.from_pretrained(AutoModel.from_pretrained(config["base_model_name_or_path"]), str(run))
    torch.testing.assert_close(peft_logits(plain.eval(), run, TEXTS), reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="Cannot use `AutoPeftModel` with a task type"):
        AutoPeftModel.from_pretrained(str(run))
    with pytest.raises(ValueError, match="Expected target PEFT class: PeftModelForFeatureExtraction, but you have "
                                         "asked for: PeftModelForSequenceClassification"):
        AutoPeftModelForSequenceClassification.from_pretrained(str(run))


def test_peft_loaders_on_a_run_folder(lora_run, tiny_model_dir):
    assert json.loads((lora_run / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model_dir
    check_peft_loaders(lora_run, load(lora_run).logits(TEXTS))


PUSH = """
import json, sys
from huggingface_hub import snapshot_download
from adapters_kit.share.hub import push_run
for run, repo in json.loads(sys.argv[1]):
    push_run(run, repo, token="hf_standin")
print("RESULT " + json.dumps(snapshot_download("user/tiny", token="hf_standin")))
"""


def test_a_pushed_run_names_its_base_by_hub_id_and_keeps_peft_correct_or_loud(lora_run, tmp_path):
    tiny, builtin = tmp_path / "tiny", tmp_path / "builtin"
    shutil.copytree(lora_run, tiny)
    shutil.copytree(lora_run, builtin)
    # what push reads of a run of the built-in minilm-l6, saved by an older version: its name in train_config.json,
    # and in adapter_config.json the path of the packaged copy and no task type (push does not load the weights)
    for name, edit in (("train_config.json", {"model": "minilm-l6"}),
                       ("adapter_config.json", {"base_model_name_or_path": "/venv/site-packages/minilm/model",
                                                "task_type": None})):
        (builtin / name).write_text(json.dumps({**json.loads((builtin / name).read_text()), **edit}))
    server, store, endpoint = hub_standin.start()
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", PUSH, json.dumps([[str(tiny), "user/tiny"],
                                                                      [str(builtin), "user/builtin"]])],
                              env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    pushed = {repo: store.files(repo, "main")[1] for repo in ("user/tiny", "user/builtin")}
    config = json.loads(pushed["user/builtin"]["adapter_config.json"])
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["task_type"] == "FEATURE_EXTRACTION" and config["task_type"] not in HUB_PEFT_SNIPPET
    assert (builtin / "adapter_config.json").read_bytes() == pushed["user/builtin"]["adapter_config.json"]
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in pushed["user/builtin"]["README.md"].decode()
    # a run of a local folder keeps naming it (no Hub id to give); PEFT's loaders work on the downloaded copy
    folder = Path(json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:]))
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        json.loads((lora_run / "adapter_config.json").read_text())["base_model_name_or_path"]
    check_peft_loaders(folder, load(lora_run).logits(TEXTS))
