"""Never lose a user's data: the output-folder rule of every writing command, damaged run folders named in one
line, and nothing in a folder changed by a command that fails.

Each table row is a command line that must fail with exit code 2 and one line, and leave every watched file as it
was (tests/cli_cases.py). The data-loss cases use a real ``.git`` folder and a dotfile in the target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from adapters_kit.cli import main
from tests.cli_cases import assert_one_line_error
from tests.conftest import make_texts, write_csv


def _git_folder(path: Path) -> Path:
    """A user's project folder: a real git repository with one commit and an untracked dotfile."""
    path.mkdir(parents=True)
    (path / "notes.md").write_text("my notes\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@example.com", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@example.com"}
    for cmd in (["git", "init", "-q"], ["git", "add", "notes.md"], ["git", "commit", "-qm", "notes"]):
        subprocess.run(cmd, cwd=path, check=True, env=env)
    (path / "notes.md").unlink()  # only hidden entries are left: .git/ (history) and .env
    (path / ".env").write_text("SECRET=1\n")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("safety")
    w = {"root": root, "model": tiny_model_dir,
         "train": write_csv(root / "train.csv", make_texts(20, seed=1)),
         "test": write_csv(root / "test.csv", make_texts(5, seed=2))}
    w["data"] = f"train={w['train']},test={w['test']}"
    assert main(["train", "--model", tiny_model_dir, "--data", w["data"], "--method", "lora", "--epochs", "1",
                 "--batch-size", "8", "--max-length", "32", "--output", str(root / "run")]) == 0
    w["run"] = root / "run"
    w["checkpoint"] = sorted((root / "run").glob("checkpoint-*"))[-1]
    w["hidden"] = _git_folder(root / "proj")
    # a finished run the user keeps a file of their own in
    shutil.copytree(root / "run", root / "run_plus")
    (root / "run_plus" / "my_analysis.ipynb").write_text("{}")
    (root / "run_plus" / ".git").mkdir()
    # a data folder the output must not swallow
    (root / "datadir").mkdir()
    w["inner"] = write_csv(root / "datadir" / "train.csv", make_texts(20, seed=3))
    return w


def train(w, output, *extra, data=None):
    return ["train", "--model", w["model"], "--data", data or w["data"], "--method", "probe", "--epochs", "1",
            "--max-length", "32", "--output", str(output), *extra]


FOLDER_CASES = [
    ("only hidden entries: .git and .env", lambda w: train(w, w["hidden"]),
     "holds files that are not a run (.env, .git)"),
    ("only hidden entries, with --overwrite", lambda w: train(w, w["hidden"], "--overwrite"),
     "with or without --overwrite"),
    ("a finished run with the user's files, --overwrite", lambda w: train(w, w["root"] / "run_plus", "--overwrite"),
     "did not write (.git, my_analysis.ipynb)"),
    ("--resume-from on a finished run", lambda w: train(w, w["run"], "--resume-from", str(w["checkpoint"])),
     "holds a finished run; there is nothing to resume"),
    ("--resume on a finished run", lambda w: train(w, w["run"], "--resume"),
     "holds a finished run; there is nothing to resume"),
    ("the output holds the data", lambda w: train(w, w["root"] / "datadir", "--overwrite",
                                                  data=f"train={w['inner']}"), "holds this command's input"),
    ("the output is the model folder", lambda w: train(w, w["model"], "--overwrite"), "holds this command's input"),
    ("export into a folder with hidden entries", lambda w: ["export", str(w["run"]), "--to", "int8", "--output",
                                                            str(w["hidden"])], "already exists and is not empty"),
    ("export into the run it exports", lambda w: ["export", str(w["run"]), "--to", "int8", "--output",
                                                  str(w["run"])], "holds this command's input"),
    ("sweep into a folder with hidden entries", lambda w: ["sweep", *train(w, w["hidden"], "--overwrite")[1:],
                                                           "--trials", "1"], "holds files that are not a sweep"),
    ("sweep into a finished run", lambda w: ["sweep", *train(w, w["run"], "--overwrite")[1:], "--trials", "1"],
     "holds files that are not a sweep"),
    ("intermediate folders for a command that fails", lambda w: train(w, w["root"] / "new" / "deep" / "run",
                                                                      "--lr", "-1"), "lr must be > 0"),
    ("intermediate folders, bad data", lambda w: train(w, w["root"] / "new" / "deep" / "run",
                                                       data="train=/nowhere/a.csv"), "does not exist"),
]


@pytest.mark.parametrize("name, argv, message", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_output_folder_cases(world, capsys, name, argv, message):
    assert_one_line_error(main, argv(world), message, capsys, world["root"])
    assert not (world["root"] / "new").exists()


@pytest.mark.parametrize("where", [".", "", "parent"])
def test_the_current_folder_and_its_parents_are_refused(world, capsys, monkeypatch, where):
    """``cd proj && adapters-kit train --output .`` must not swap out the working folder, even when it is empty."""
    work = world["root"] / "cwd_case" / "here"
    work.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work)
    output = {".": ".", "": str(work), "parent": ".."}[where]
    assert_one_line_error(main, train(world, output, "--overwrite"), "is the current folder or holds it", capsys,
                          world["root"] / "cwd_case")


def test_overwrite_replaces_only_a_run_it_wrote(world, tmp_path, capsys):
    """A run folder adapters-kit wrote is replaced by --overwrite; nothing outside it changes, and the new run is
    complete (its manifest lists exactly what it holds)."""
    out = tmp_path / "run"
    shutil.copytree(world["run"], out)
    (tmp_path / "keep.txt").write_text("mine")
    old_metrics = json.loads((out / "metrics.json").read_text())
    assert main(train(world, out, "--overwrite")) == 0
    info = json.loads((out / "run_info.json").read_text())
    assert sorted(info["files"]) == sorted(os.listdir(out))
    assert json.loads((out / "train_config.json").read_text())["method"] == "probe"
    assert json.loads((out / "metrics.json").read_text()) != old_metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "run"]  # no temporary sibling left
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_eval_on_labels_the_run_never_saw_keeps_the_metrics(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    alien = write_csv(tmp_path / "alien.csv", [(t, "weather") for t, _ in make_texts(3, seed=5)])
    line = assert_one_line_error(main, ["eval", str(run), "--data", f"train={world['train']},test={alien}"],
                                 "split 'test'", capsys, run)
    assert "weather" in line or "never" in line, line
    assert_one_line_error(main, ["eval", str(run), "--data", alien], "split 'test'", capsys, run)


def test_eval_scores_a_lone_file_without_a_train_file(world, tmp_path, capsys):
    """``eval --data new.csv``: the file is the split scored, whole, as the same file beside a train file."""
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    assert main(["eval", str(run), "--data", world["test"]]) == 0
    alone = json.loads((run / "metrics.json").read_text())["test"]
    assert main(["eval", str(run), "--data", world["data"]]) == 0
    paired = json.loads((run / "metrics.json").read_text())["test"]
    assert alone["n"] == paired["n"] == len(set(make_texts(5, seed=2)))
    assert alone["accuracy"] == paired["accuracy"] and alone["confusion_matrix"] == paired["confusion_matrix"]


def test_a_failed_push_leaves_the_run_folder_as_it_was(world, tmp_path, capsys):
    """The card names the repo only once the upload went through."""
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    # the test process runs with HF_HUB_OFFLINE=1 (conftest): huggingface_hub refuses to connect
    assert_one_line_error(main, ["push", str(run), "--repo-id", "user/name"], "push to user/name failed", capsys,
                          run)


def _damage(run: Path, how: str) -> None:
    if how == "weights are random bytes":
        (run / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    elif how == "the head is deleted":
        (run / "head.safetensors").unlink()
    elif how == "a pickle in place of safetensors":
        import torch

        torch.save({"weight": torch.zeros(2, 2)}, run / "head.safetensors")
    elif how == "labels.json is a list":
        (run / "labels.json").write_text(json.dumps(["business", "sport", "tech"]))
    elif how == "labels.json has fewer labels than the head":
        (run / "labels.json").write_text(json.dumps({"id2label": {"0": "business", "1": "sport"},
                                                     "label2id": {"business": 0, "sport": 1}}))
    elif how == "metrics.json is truncated":
        text = (run / "metrics.json").read_text()
        (run / "metrics.json").write_text(text[: len(text) // 2])
    elif how == "train_config.json has an unknown key":
        cfg = json.loads((run / "train_config.json").read_text())
        (run / "train_config.json").write_text(json.dumps({**cfg, "learning_rate_x": 1}))
    elif how == "state.json of the wrong shape":
        for ckpt in run.glob("checkpoint-*"):
            (ckpt / "state.json").write_text(json.dumps([1, 2, 3]))


DAMAGE = [
    ("weights are random bytes", "predict", "adapter_model.safetensors is damaged (not a readable safetensors"),
    ("the head is deleted", "predict", "head.safetensors is missing"),
    ("a pickle in place of safetensors", "predict", "head.safetensors is damaged (not a readable safetensors"),
    ("labels.json is a list", "predict", "labels.json is damaged (a JSON list where a dict belongs)"),
    ("labels.json has fewer labels than the head", "predict",
     "labels.json is damaged (it lists 2 labels but head.safetensors scores 3 classes)"),
    ("metrics.json is truncated", "eval", "metrics.json is corrupt"),
    ("train_config.json has an unknown key", "predict", "train_config.json: unknown config key(s): learning_rate_x"),
    ("state.json of the wrong shape", "resume", "state.json is damaged (config missing or of the wrong type)"),
]


@pytest.mark.parametrize("how, command, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_run_folder_is_named_in_one_line(world, tmp_path, capsys, how, command, message):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    _damage(run, how)
    argv = {"predict": ["predict", str(run), "market shares"],
            "eval": ["eval", str(run), "--data", world["data"]],
            "resume": ["train", "--model", world["model"], "--data", world["data"], "--method", "lora", "--epochs",
                       "1", "--batch-size", "8", "--max-length", "32", "--output", str(tmp_path / "again"),
                       "--resume-from", str(sorted(run.glob("checkpoint-*"))[-1])]}[command]
    assert_one_line_error(main, argv, message, capsys, tmp_path)


def test_a_full_disk_during_a_checkpoint_leaves_no_partial_checkpoint(world, tmp_path, capsys, monkeypatch):
    """The disk fills while the optimizer state is written: one line saying what to do, and no half-written
    ``.checkpoint-N.tmp`` folder or truncated file left behind."""
    import errno

    import torch

    import adapters_kit.train.resume as resume

    real_save = torch.save

    def full(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        with open(path, "r+b") as fh:  # what a full disk leaves: a truncated file
            fh.truncate(10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(resume.torch, "save", full)
    out = tmp_path / "run"
    code = main(["train", "--model", world["model"], "--data", world["data"], "--method", "lora", "--epochs", "1",
                 "--batch-size", "8", "--max-length", "32", "--output", str(out)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # above it: the training progress bar
    assert code == 2 and "Traceback" not in err, err
    assert last.startswith("adapters-kit: error: could not write checkpoint") and "No space left" in last, last
    assert "--resume" in last
    leftovers = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert leftovers == [], leftovers


def test_a_sweep_replaces_only_a_sweep_it_wrote(world, tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *train(world, out)[1:], "--trials", "1", "--space", "lr=0.01,0.02"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["best", "sweep.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]  # built beside it, renamed at the end
    assert main([*argv, "--overwrite"]) == 0
    (out / "todo.txt").write_text("mine")
    assert_one_line_error(main, [*argv, "--overwrite"], "entries adapters-kit did not write (todo.txt)", capsys,
                          tmp_path)
