"""Kill tests: a command stopped by SIGINT or SIGKILL at a chosen moment (during training, while a checkpoint is
written, around the final folder swap) leaves either nothing, an unfinished run's complete checkpoints, or a complete
run, and the next command says what to do (or just works). Each kill runs the real CLI in its own process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapters_kit.cli import main
from tests.cli_cases import snapshot
from tests.conftest import make_texts, write_csv

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("kill")
    data = f"train={write_csv(root / 'train.csv', make_texts(20, seed=1))}," \
           f"test={write_csv(root / 'test.csv', make_texts(5, seed=2))}"
    base = ["train", "--model", tiny_model_dir, "--data", data, "--method", "lora", "--epochs", "1",
            "--batch-size", "8", "--max-length", "32", "--save-steps", "2"]
    finished = root / "finished"
    assert main([*base, "--output", str(finished)]) == 0
    return base, finished


def killed(moment: str, signame: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tests.kill_script", moment, signame, *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def assert_complete(out: Path) -> dict:
    """A finished run: its manifest lists exactly what it holds, and nothing temporary is beside or inside it."""
    info = json.loads((out / "run_info.json").read_text())
    assert sorted(info["files"]) == sorted(os.listdir(out))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]
    return info


def entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_sigint_during_training_saves_a_checkpoint_and_resume_finishes(setup, tmp_path, capsys):
    base, _ = setup
    out = tmp_path / "run"
    proc = killed("training", "SIGINT", [*base, "--output", str(out)])
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("run the same command with --resume to continue")
    assert entries(out) == ["checkpoint-2", "checkpoint-3"]  # --save-steps 2, and the step the flag was seen at
    assert main([*base, "--output", str(out)]) == 2
    assert "holds checkpoints of an unfinished run; pass --resume" in capsys.readouterr().err
    assert main([*base, "--output", str(out), "--resume"]) == 0
    assert_complete(out)


def test_sigkill_during_training_leaves_checkpoints_that_resume(setup, tmp_path):
    base, _ = setup
    out = tmp_path / "run"
    proc = killed("training", "SIGKILL", [*base, "--output", str(out)])
    assert proc.returncode == -9
    assert entries(out) == ["checkpoint-2"]
    assert main([*base, "--output", str(out), "--resume"]) == 0
    assert_complete(out)


def test_sigkill_during_a_checkpoint_write_leaves_only_debris_the_next_run_clears(setup, tmp_path):
    base, _ = setup
    out = tmp_path / "run"
    proc = killed("checkpoint", "SIGKILL", [*base, "--output", str(out)])
    assert proc.returncode == -9
    assert entries(out) == [".checkpoint-2.tmp"]  # never taken for a checkpoint: it has no state.json
    assert main([*base, "--output", str(out)]) == 0
    assert ".checkpoint-2.tmp" not in assert_complete(out)["files"] + entries(out)


def test_sigkill_just_before_the_swap_keeps_the_old_run(setup, tmp_path):
    base, finished = setup
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out)
    proc = killed("swap-before", "SIGKILL", [*base, "--method", "probe", "--output", str(out), "--overwrite"])
    assert proc.returncode == -9
    after = snapshot(out)
    assert {k: v for k, v in after.items() if "checkpoint-" not in k} == \
        {k: v for k, v in before.items() if "checkpoint-" not in k}  # the old run, less its checkpoints
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.tmp-")]  # the new one, never named
    assert main([*base, "--method", "probe", "--output", str(out), "--overwrite"]) == 0
    assert assert_complete(out)["modality"] == "text"
    assert json.loads((out / "train_config.json").read_text())["method"] == "probe"


def test_sigkill_just_after_the_swap_leaves_the_new_run_and_the_next_command_clears_the_old(setup, tmp_path, capsys):
    base, finished = setup
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    proc = killed("swap-after", "SIGKILL", [*base, "--method", "probe", "--output", str(out), "--overwrite"])
    assert proc.returncode == -9
    assert json.loads((out / "train_config.json").read_text())["method"] == "probe"
    info = json.loads((out / "run_info.json").read_text())
    assert sorted(info["files"]) == entries(out)
    assert main([*base, "--method", "probe", "--output", str(out)]) == 2
    assert "already holds a run; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the old run's leftovers are gone
