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
