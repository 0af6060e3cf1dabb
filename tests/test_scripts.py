"""scripts/train.py end to end, on one process and under `accelerate launch` with two CPU processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
EXPECTED = {"adapter_config.json", "adapter_model.safetensors", "head.safetensors", "labels.json",
            "confusion_matrix.png", "confusion_matrix_normalized.png", "reliability.png", "curves.png",
            "metrics.json", "run_info.json", "tokenizer.json", "tokenizer_config.json", "train_config.json",
            "train_log.jsonl", "README.md"}


def files(run_dir: Path) -> set[str]:
    """The run folder's files; its kept training checkpoints (one per epoch here: 2) are counted apart."""
    names = {p.name for p in run_dir.iterdir()}
    checkpoints = {n for n in names if n.startswith("checkpoint-")}
    assert len(checkpoints) == 2, checkpoints
    return names - checkpoints


def config(tmp_path, tiny_model_dir, text_files, name):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"# accelerate launch scripts/train.py --config {p.name}\nmodel: {tiny_model_dir}\n"
                 f"data: train={text_files['train']},test={text_files['test']}\nmethod: lora\n"
                 f"output: {tmp_path / name}\nepochs: 2\nbatch_size: 8\nmax_length: 32\nlr: 0.005\n")
    return str(p)


def run(cmd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_train_script_writes_exactly_the_run_folder(tmp_path, tiny_model_dir, text_files):
    cfg = config(tmp_path, tiny_model_dir, text_files, "one")
    r = run([sys.executable, "scripts/train.py", "--config", cfg, "seed=5"])
    assert "'test':" in r.stdout
    assert files(tmp_path / "one") == EXPECTED
    assert json.loads((tmp_path / "one" / "train_config.json").read_text())["seed"] == 5


def test_train_script_reports_user_errors(tmp_path):
    r = subprocess.run([sys.executable, "scripts/train.py", "epochs=0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "epochs must be a positive integer" in r.stderr and "Traceback" not in r.stderr


def test_accelerate_launch_two_cpu_processes(tmp_path, tiny_model_dir, text_files):
    cfg = config(tmp_path, tiny_model_dir, text_files, "two")
    launcher = Path(sys.executable).parent / "accelerate"
    r = run([str(launcher), "launch", "--config_file", "scripts/accelerate_configs/cpu-2proc.yaml",
             "scripts/train.py", "--config", cfg])
    assert r.stdout.count("'test':") == 1, "only rank 0 prints"
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["train"]["num_processes"] == 2
    assert files(tmp_path / "two") == EXPECTED
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    # every test example counted once, even though 2 processes split the batches
    assert metrics["test"]["n"] == sum(map(sum, metrics["test"]["confusion_matrix"]))
    import pandas as pd

    assert metrics["test"]["n"] == pd.read_csv(text_files["test"])["text"].nunique()
    # replacing the finished run (and so its checkpoints) from two processes: the main one clears them first
    before = (tmp_path / "two" / "run_info.json").read_text()
    run([str(launcher), "launch", "--config_file", "scripts/accelerate_configs/cpu-2proc.yaml",
         "scripts/train.py", "--config", cfg, "overwrite=true", "seed=7"])
    assert files(tmp_path / "two") == EXPECTED and (tmp_path / "two" / "run_info.json").read_text() != before
    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["seed"] == 7


def test_two_processes_save_the_adapter_one_process_saves_at_the_same_global_batch(tmp_path, tiny_model_dir,
                                                                                  text_files):
    """2 processes x batch 4 and 1 process x batch 8 see the same global batches (accelerate gives process i every
    other batch of 4 of the same seeded permutation) and DDP averages their gradients: the same adapter. Dropout is
    off, the only randomness that would differ between the two."""
    import shutil

    import torch
    from safetensors.torch import load_file
    from transformers import BertModel

    model_dir = tmp_path / "tiny-nodrop"
    shutil.copytree(tiny_model_dir, model_dir)
    BertModel.from_pretrained(str(model_dir), hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0).save_pretrained(str(model_dir))
    base = config(tmp_path, str(model_dir), text_files, "base")
    common = ["lora_dropout=0", "head_dropout=0", "max_train_samples=64"]
    run([sys.executable, "scripts/train.py", "--config", base, "output=" + str(tmp_path / "one"), *common])
    launcher = Path(sys.executable).parent / "accelerate"
    r = run([str(launcher), "launch", "--config_file", "scripts/accelerate_configs/cpu-2proc.yaml", "scripts/train.py",
             "--config", base, "output=" + str(tmp_path / "two"), "batch_size=4", *common])
    assert r.stdout.count("'test':") == 1, "only rank 0 prints"
    assert "batch 4 per process x 2 process(es) x 1 accumulation step(s) = 8 examples" in r.stdout
    for name in ("adapter_model.safetensors", "head.safetensors"):
        one, two = load_file(str(tmp_path / "one" / name)), load_file(str(tmp_path / "two" / name))
        assert one.keys() == two.keys() and one
        for key in one:
            torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4, msg=f"{name}:{key}")
