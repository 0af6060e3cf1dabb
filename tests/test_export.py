"""export --to merged | onnx | int8 of a tiny LoRA run: each artefact against the adapter model it came from."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapters_kit import load
from adapters_kit.cli import main
from adapters_kit.share.export import export_run, load_int8, load_merged, merged_classifier, quantize
from tests.test_roundtrip import train_tiny

TEXTS = ["team goal match win", "market shares profit bank economy today and the report says growth",
         "phone chip data users", "the coach"]


@pytest.fixture
def lora_run(tiny_model_dir, tmp_path_factory):
    return train_tiny("lora", tiny_model_dir, tmp_path_factory)


def test_merged_loads_with_transformers_and_matches(lora_run, tmp_path):
    from transformers import AutoTokenizer, pipeline

    _, trainer, _, run = lora_run
    out = tmp_path / "merged"
    report = export_run(run, "merged", out)
    assert {"config.json", "model.safetensors", "modeling_adapters_kit.py", "configuration_adapters_kit.py",
            "labels.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    ref = load(run)
    model = load_merged(out)
    assert type(model).__name__ == "AdaptersKitClassifier"
    assert model.config.id2label == {0: "business", 1: "sport", 2: "tech"}
    batch = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    torch.testing.assert_close(logits, ref.logits(TEXTS), atol=1e-4, rtol=0)
    pipe = pipeline("text-classification", model=str(out), trust_remote_code=True)
    assert [r["label"] for r in pipe(TEXTS)] == [r["label"] for r in ref(TEXTS)]
    assert [r["artefact"] for r in report["rows"]] == ["run (adapter)", "merged"]
    assert report["checks"][0].startswith("merged vs adapter model: max abs logit difference")


NO_PEFT = """
import sys, json
sys.modules["peft"] = None  # import peft now fails: the merged folder must not need it
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
out, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
batch = AutoTokenizer.from_pretrained(out, trust_remote_code=True)(texts, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits.tolist()
labels = [r["label"] for r in pipeline("text-classification", model=out, trust_remote_code=True)(texts)]
try:
    import peft  # noqa: F401
    peft_blocked = False
except ImportError:
    peft_blocked = True
print("RESULT " + json.dumps({"logits": logits, "labels": labels, "peft_blocked": peft_blocked,
                              "adapters_kit_loaded": "adapters_kit" in sys.modules}))
"""


def test_merged_needs_no_peft(lora_run, tmp_path):
    _, _, _, run = lora_run
    out = tmp_path / "merged"
    export_run(run, "merged", out)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    proc = subprocess.run([sys.executable, "-c", NO_PEFT, str(out), json.dumps(TEXTS)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["peft_blocked"] and not result["adapters_kit_loaded"]
    ref = load(run)
    torch.testing.assert_close(torch.tensor(result["logits"]), ref.logits(TEXTS), atol=1e-4, rtol=0)
    assert result["labels"] == [r["label"] for r in ref(TEXTS)]


def test_onnx_matches_pytorch_on_two_shapes(lora_run, tmp_path):
    import onnxruntime
    from transformers import AutoTokenizer

    _, _, _, run = lora_run
    out = tmp_path / "onnx"
    report = export_run(run, "onnx", out)
    check = json.loads((out / "onnx_check.json").read_text())
    assert check["max_abs_diff"] < 1e-3 and check["batch_shapes"][0] != check["batch_shapes"][1]
    assert json.loads((out / "labels.json").read_text())["id2label"] == {"0": "business", "1": "sport", "2": "tech"}
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    tok = AutoTokenizer.from_pretrained(str(out))
    ref = load(run)
    for texts in (TEXTS[:1], TEXTS, TEXTS * 3):  # batch 1, 4 and 12; lengths differ from the export's sample
        enc = tok(texts, padding=True, return_tensors="np")
        got = session.run(["logits"], {i.name: enc[i.name] for i in session.get_inputs()})[0]
        torch.testing.assert_close(torch.from_numpy(got), ref.logits(texts), atol=1e-3, rtol=0)
    assert "onnxruntime vs PyTorch on 2 batch shapes" in report["checks"][0]


def test_int8_round_trip_is_exact_and_close_to_float(lora_run, tmp_path):
    from safetensors import safe_open

    _, _, _, run = lora_run
    out = tmp_path / "int8"
    export_run(run, "int8", out)
    with safe_open(str(out / "model_int8.safetensors"), "pt") as f:
        keys = list(f.keys())
        int8 = [k for k in keys if k.endswith(".weight_int8")]
        assert int8 and all(f.get_tensor(k).dtype == torch.int8 for k in int8)
    # every Linear is int8: 2 layers x 6 linears + BERT's pooler + the head
    assert len(int8) == 2 * 6 + 1 + 1
    from adapters_kit.runs.checkpoint import load_run

    loaded = load_int8(out)
    in_memory = quantize(merged_classifier(load_run(run)))
    batch = dict(load(run).run.processor(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        got, want = loaded(**batch), in_memory(**batch)
    assert torch.equal(got, want)
    float_logits = load(run).logits(TEXTS)
    assert 0 < (got - float_logits).abs().max() < 0.05  # quantised: close, not identical


def test_cli_export_table_with_data(lora_run, tmp_path, capsys):
    _, trainer, metrics, run = lora_run
    out = tmp_path / "int8"
    assert main(["export", str(run), "--to", "int8", "--output", str(out), "--data", trainer.cfg.data,
                 "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["artefact", "size", "on", "disk", "examples/s", "accuracy"]
    rows = {line.split("  ")[0].strip(): line.split() for line in lines[2:4]}
    # the run's own row reproduces the test accuracy training recorded
    assert float(rows["run (adapter)"][-1]) == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)
    from adapters_kit.share.export import folder_mb

    assert rows["int8"][1:3] == [f"{folder_mb(out):.2f}", "MB"] and 0 <= float(rows["int8"][-1]) <= 1
    assert any(line.startswith("int8 vs run on 18 examples of test of") for line in lines)
    assert main(["export", str(run), "--to", "int8", "--output", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (f"adapters-kit: error: --output {out} already exists and is not "
                                               f"empty; choose a new folder")


def test_export_leaves_no_partial_folder(lora_run, tmp_path, monkeypatch):
    import adapters_kit.share.export as export

    _, _, _, run = lora_run
    monkeypatch.setattr(export, "ONNX_TOLERANCE", 0.0)  # any difference fails the check
    with pytest.raises(RuntimeError, match="ONNX logits differ"):
        export_run(run, "onnx", tmp_path / "onnx")
    assert list(Path(tmp_path).iterdir()) == []
