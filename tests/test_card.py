"""Model cards: Hub front matter, body regex (setfit style), snippets that run, regeneration by the CLI."""

import contextlib
import io
import json
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

from adapters_kit import load
from adapters_kit.cli import main
from adapters_kit.runs.card import CardData, render_card
from tests.test_roundtrip import train_tiny

CARD_PATTERN = re.compile(r"""---
library_name: peft
pipeline_tag: text-classification
tags:
- adapters_kit
- lora
- text-classification
- peft
datasets: \[\]
metrics:
- accuracy
- f1
model-index:
- name: .+
  results:
(?:  - task:\n(?:    .+\n)+?)+---

# run: lora on .+

A \*\*text-classification\*\* model: a LoRA adapter on `.+`,
trained with adapters_kit 0\.1\.0 on `custom files`\.
[\d,]+ of [\d,]+ parameters were trained \(\d+\.\d\d%\); the rest stay as in the base model\.

## How to load

```python
from adapters_kit import load

clf = load\('.+'\)
print\(clf\(.+\)\)
print\(clf\.logits\(.+\)\.shape\)
```

The adapter is a plain PEFT adapter; .+:

```python
(?:.*\n)+?```

## Method and hyper-parameters

\| setting \| value \|
\|---\|---\|
(?:\| \w+ \| .+ \|\n)+
## Labels

\| id \| label \| support \(test\) \|
\|---\|---\|---\|
\| 0 \| business \| \d+ \|
\| 1 \| sport \| \d+ \|
\| 2 \| tech \| \d+ \|

## Results

\| split \| n \| accuracy \| f1_macro \| f1_weighted \| precision_macro \| recall_macro \| log_loss \| ece \|
\|---\|---\|---\|---\|---\|---\|---\|---\|---\|
\| validation \| \d+ (?:\| [\d.]+ ){7}\|
\| test \| \d+ (?:\| [\d.]+ ){7}\|

!\[confusion matrix\]\(confusion_matrix\.png\)

## Intended use and limitations

(?:.+\n)+""")


@pytest.fixture
def lora_run(tiny_model_dir, tmp_path_factory):
    return train_tiny("lora", tiny_model_dir, tmp_path_factory)


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_train_writes_the_card(lora_run):
    _, _, metrics, out = lora_run
    text = (out / "README.md").read_text()
    assert CARD_PATTERN.fullmatch(text), text
    meta = front_matter(text)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert "base_model" not in meta  # a local folder is no Hub id: the Hub could not link it
    results = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in meta["model-index"][0]["results"]}
    for split in ("validation", "test"):
        assert results[split] == {"accuracy": round(metrics[split]["accuracy"], 4),
                                  "f1": round(metrics[split]["f1_macro"], 4)}
    supports = json.loads((out / "metrics.json").read_text())["test"]["per_class"]
    for name, row in supports.items():
        assert f"| {name} | {row['support']} |" in text
    info = json.loads((out / "run_info.json").read_text())
    share = 100 * info["trainable_parameters"] / info["total_parameters"]
    assert f"{info['trainable_parameters']:,} of {info['total_parameters']:,} parameters were trained " \
           f"({share:.2f}%)" in text
    assert "| lora_r | 8 |" in text and "| lr | 0.005 |" in text
    assert "| attention_dropout | 0.0 |" in text  # LoRA's default, which the backbone's config does not say
    assert (info["trained_blocks"], info["blocks"]) == ([1], 2)  # the top half of the tiny BERT's 2 blocks
    assert "| trained_blocks | 1 (of blocks 0-1) |" in text


def test_builtin_model_names_its_hub_base(lora_run):
    _, _, _, out = lora_run
    data = CardData.from_run(out)
    data.cfg = {**data.cfg, "model": "minilm-l6"}
    meta = front_matter(render_card(data))
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_card_snippets_run_and_agree_with_load(lora_run):
    _, _, _, out = lora_run
    load_snippet, peft_snippet = code_blocks((out / "README.md").read_text())
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(load_snippet, {})
    clf = load(out)
    example = ["Shares rose sharply after the results were published."]
    assert buf.getvalue().splitlines() == [str(clf(example)), str(clf.logits(example).shape)]
    scope: dict = {}
    with torch.no_grad():
        exec(peft_snippet, scope)
    torch.testing.assert_close(scope["logits"], clf.logits(["some text"]), atol=1e-5, rtol=0)


def test_plain_peft_plus_head_gives_load_logits(lora_run, tiny_model_dir):
    """Issue item 1: PeftModel.from_pretrained(AutoModel.from_pretrained(base), DIR) + the saved head."""
    _, _, _, out = lora_run
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    texts = ["team goal match win", "market shares profit bank economy today", "phone chip data"]
    backbone = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_model_dir), str(out)).eval()
    head = load_file(str(out / "head.safetensors"))
    batch = AutoTokenizer.from_pretrained(str(out))(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = backbone(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    logits = ((hidden * mask).sum(1) / mask.sum(1)) @ head["1.weight"].T + head["1.bias"]
    torch.testing.assert_close(logits, load(out).logits(texts), atol=1e-5, rtol=0)


def test_cli_card_regenerates(lora_run, capsys):
    _, _, _, out = lora_run
    before = (out / "README.md").read_text()
    (out / "README.md").unlink()
    assert main(["card", str(out)]) == 0
    assert (out / "README.md").read_text() == before
    assert main(["card", str(out), "--repo-id", "someone/bbc"]) == 0
    assert "clf = load('someone/bbc')" in (out / "README.md").read_text()
    assert main(["card", str(out)]) == 0  # back to the folder, for the other tests
    assert main(["card", str(out.parent / "missing")]) == 2
    assert "is not a complete run folder (train_config.json is missing)" in capsys.readouterr().err


def test_the_wheel_carries_the_card_template_and_the_modeling_file(tmp_path):
    """A non-editable install has no source tree beside it: the wheel itself must hold the template."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(repo)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("adapters_kit-*.whl"))).namelist()
    assert "adapters_kit/model_cards/model_card.md.j2" in names
    assert "adapters_kit/share/remote_code/modeling_adapters_kit.py" in names
    assert "adapters_kit/evaluation/evaluate_modules/classification/classification.py" in names
