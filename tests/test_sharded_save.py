"""A sharded model saves its adapter from the gathered state, never from its pieces.

accelerate 1.15 runs FSDP and DeepSpeed ZeRO-3 only on accelerators, so this test shards the classifier with
torch's FSDP2 (``fully_shard``) on 2 CPU processes over gloo and saves through adapters_kit's own ``save_run``, the
function the trainer calls with ``Accelerator.get_state_dict``'s gathered state."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from adapters_kit import load
from tests.sharded_fixture import STEPS, TEXTS, batch, build, step

ROOT = Path(__file__).parents[1]


def test_fsdp2_sharded_lora_saves_the_gathered_adapter(tiny_model_dir, tmp_path):
    out, result = tmp_path / "sharded", tmp_path / "result.json"
    r = subprocess.run([str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                        "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "tests/fsdp_save_script.py", tiny_model_dir, str(out), str(result)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(result.read_text())
    assert seen["world"] == 2
    assert "sharded" in seen["ungathered_error"] and "not gathered before saving" in seen["ungathered_error"]
    assert not (tmp_path / "sharded-ungathered").exists()  # the refused save left nothing behind

    # the same steps on one process, unsharded, on the whole batch
    model, tok = build(tiny_model_dir)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs, labels = batch(tok)
    for _ in range(STEPS):
        step(model, optimizer, inputs, labels)
    saved = load_file(str(out / "adapter_model.safetensors"))
    lora = {n: p for n, p in model.backbone.named_parameters() if "lora_" in n}
    assert len(saved) == len(lora) > 0 and all(v.numel() > 0 for v in saved.values())
    for name, p in lora.items():
        key = name.replace(".default", "")
        torch.testing.assert_close(saved[key], p.detach(), atol=1e-5, rtol=1e-4)
    head = load_file(str(out / "head.safetensors"))
    torch.testing.assert_close(head["1.weight"], model.head[1].weight.detach(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        expected = model(**dict(tok(TEXTS[:3], padding=True, return_tensors="pt")))
    torch.testing.assert_close(load(str(out)).logits(TEXTS[:3]), expected, atol=1e-4, rtol=1e-4)
