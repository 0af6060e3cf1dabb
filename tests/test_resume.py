"""Checkpoints and resume: a run killed with SIGKILL (or stopped with Ctrl-C) and resumed ends exactly where an
uninterrupted run ends; checkpoint folders are kept, rotated and refused as the README says."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters_kit.errors import UserError
from adapters_kit.evaluation.evaluator import SPEED_KEYS
from adapters_kit.runs.checkpoint import check_output
from adapters_kit.train.resume import list_checkpoints, rotate

EPOCHS = 12


def command(tiny_model_dir, text_files, out, *extra):
    return [sys.executable, "-m", "adapters_kit", "train", "--model", tiny_model_dir, "--data",
            f"train={text_files['train']},test={text_files['test']}", "--method", "lora", "--output", str(out),
            "--epochs", str(EPOCHS), "--batch-size", "8", "--max-length", "32", "--lr", "5e-3", "--seed", "3",
            "--save-steps", "3", "--save-total-limit", "2", *extra]


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1])}


def comparable(run_dir: Path) -> dict:
    """What must not depend on the interruption: metrics (without timings), evaluation history, step losses."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    clean = {s: {k: v for k, v in m.items() if k not in SPEED_KEYS} for s, m in metrics.items() if s != "train"}
    info = json.loads((run_dir / "run_info.json").read_text())
    history = [{k: v for k, v in h.items() if k not in SPEED_KEYS} for h in info["history"]]
    log = [(r["epoch"], r["step"], r["global_step"], r["loss"], r["lr"])
           for r in map(json.loads, (run_dir / "train_log.jsonl").read_text().splitlines())]
    best = {k: metrics["train"][k] for k in ("best_epoch", "best_step")}
    return {"metrics": clean, "history": history, "log": log, "best": best}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):
    from tests.conftest import make_texts, write_csv

    d = tmp_path_factory.mktemp("resume-data")
    files = {"train": write_csv(d / "train.csv", make_texts(30, seed=1)),
             "test": write_csv(d / "test.csv", make_texts(8, seed=2)[:20])}
    out = d / "whole"
    r = subprocess.run(command(tiny_model_dir, files, out), capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    n_train = json.loads((out / "metrics.json").read_text())["train"]["train_samples"] // EPOCHS
    return files, out, math.ceil(n_train / 8)


def start_and_stop_mid_epoch(cmd, out: Path, sig: int, steps_per_epoch: int) -> subprocess.Popen:
    """Start training; as soon as a checkpoint taken inside an epoch exists, send ``sig``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        mid = [p for p in list_checkpoints(out) if int(p.name.split("-")[1]) % steps_per_epoch]
        if mid:
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    proc.wait(timeout=300)
    return proc


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tiny_model_dir, uninterrupted, tmp_path):
    files, whole, steps_per_epoch = uninterrupted
    out = tmp_path / "killed"
    proc = start_and_stop_mid_epoch(command(tiny_model_dir, files, out), out, signal.SIGKILL, steps_per_epoch)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "train_config.json").exists(), "killed before the end: no folder that looks complete"
    assert list_checkpoints(out)
    r = subprocess.run(command(tiny_model_dir, files, out, "--resume"), capture_output=True, text=True, env=env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout
    assert comparable(out) == comparable(whole)
    # the finished run keeps the newest checkpoints (and the best one), no temporary folders
    kept = [p.name for p in list_checkpoints(out)]
    assert kept[-1] == f"checkpoint-{EPOCHS * steps_per_epoch}" and 2 <= len(kept) <= 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tiny_model_dir, uninterrupted, tmp_path):
    files, whole, steps_per_epoch = uninterrupted
    out = tmp_path / "interrupted"
    proc = start_and_stop_mid_epoch(command(tiny_model_dir, files, out), out, signal.SIGINT, steps_per_epoch)
    err = proc.stderr.read()
    assert proc.returncode == 130, err[-2000:]
    assert "checkpoint saved in" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "train_config.json").exists()
    r = subprocess.run(command(tiny_model_dir, files, out, "--resume"), capture_output=True, text=True, env=env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert comparable(out) == comparable(whole)


def test_resume_with_other_settings_is_refused(tiny_model_dir, uninterrupted, tmp_path):
    files, _, steps_per_epoch = uninterrupted
    out = tmp_path / "other"
    start_and_stop_mid_epoch(command(tiny_model_dir, files, out), out, signal.SIGKILL, steps_per_epoch)
    cmd = command(tiny_model_dir, files, out, "--resume")
    cmd[cmd.index("--lr") + 1] = "1e-3"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 2 and "written with other settings (lr)" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def make_checkpoints(root: Path, steps) -> None:
    for s in steps:
        (root / f"checkpoint-{s}").mkdir(parents=True)
        (root / f"checkpoint-{s}" / "state.json").write_text("{}")


def test_output_folder_rules_for_unfinished_runs(tmp_path):
    out = tmp_path / "run"
    make_checkpoints(out, [3, 6])
    (out / ".checkpoint-9.tmp").mkdir()  # an incomplete checkpoint does not count
    with pytest.raises(UserError, match="checkpoints of an unfinished run; pass --resume"):
        check_output(out, overwrite=False)
    assert check_output(out, overwrite=False, resume=True) == out / "checkpoint-6"
    assert check_output(out, overwrite=False, resume_from=str(out / "checkpoint-3")) == out / "checkpoint-3"
    with pytest.raises(UserError, match="not a complete checkpoint folder"):
        check_output(out, overwrite=False, resume_from=str(out / ".checkpoint-9.tmp"))
    assert check_output(out, overwrite=True) is None and list_checkpoints(out) == []
    with pytest.raises(UserError, match="no checkpoint to resume"):
        check_output(tmp_path / "fresh", overwrite=False, resume=True)
    (out / "train_config.json").write_text("{}")
    with pytest.raises(UserError, match="finished run; there is nothing to resume"):
        check_output(out, overwrite=False, resume=True)


def test_rotation_keeps_the_newest_and_the_best(tmp_path):
    make_checkpoints(tmp_path, [2, 4, 6, 8, 10])
    rotate(tmp_path, keep=2, best_step=4)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-8", "checkpoint-10"]


def test_resume_and_overwrite_together_are_refused():
    from adapters_kit import TrainConfig

    with pytest.raises(UserError, match="choose one"):
        TrainConfig(resume=True, overwrite=True)


def test_checkpoints_of_older_versions_compare_with_the_setting_they_trained_with(tmp_path):
    """A state.json written before fast_dropout existed trained with PyTorch's dropout: resuming it needs
    --fast-dropout false, and the default is refused by name."""
    from adapters_kit.train.resume import STATE, check_resumable

    config = {"model": "m", "lr": 0.001, "fast_dropout": False}
    (tmp_path / STATE).write_text(json.dumps({"config": {"model": "m", "lr": 0.001}}))
    assert check_resumable(tmp_path, config)["config"] == {"model": "m", "lr": 0.001}
    with pytest.raises(UserError, match=r"other settings \(fast_dropout\)"):
        check_resumable(tmp_path, {**config, "fast_dropout": True})
