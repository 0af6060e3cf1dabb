"""The console script end to end on a tiny model, and its one-line errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters_kit.cli import main
from tests.conftest import write_csv


def run_cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "adapters_kit", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_train_eval_predict_end_to_end(tiny_model_dir, text_files, tmp_path):
    out = tmp_path / "run"
    data = f"train={text_files['train']},test={text_files['test']}"
    r = run_cli("train", "--model", tiny_model_dir, "--data", data, "--method", "lora", "--output", str(out),
                "--epochs", "2", "--batch-size", "8", "--max-length", "32", "--lr", "5e-3")
    assert r.returncode == 0, r.stderr
    assert "f1_macro" in r.stdout and "validation" in r.stdout and "test" in r.stdout
    assert (out / "adapter_model.safetensors").exists() and (out / "head.safetensors").exists()

    r = run_cli("eval", str(out), "--data", data, "--split", "validation")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["n"] > 0 and "test" in metrics  # updated, not replaced

    lines = tmp_path / "inputs.txt"
    lines.write_text("bank profit shares\n\nteam goal match\n")
    r = run_cli("predict", str(out), "internet chip software", "--file", str(lines))
    assert r.returncode == 0, r.stderr
    preds = [json.loads(line) for line in r.stdout.splitlines()]
    assert [p["text"] for p in preds] == ["internet chip software", "bank profit shares", "team goal match"]
    assert all(p["label"] in {"business", "sport", "tech"} and 0 < p["score"] <= 1 for p in preds)


def test_user_error_in_a_subprocess_is_one_line_exit_2(tmp_path):
    r = run_cli("train", "--model", "no-such-model-xyz/../x", "--output", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "minilm-l6" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture
def train_args(tiny_model_dir, text_files, tmp_path):
    return ["train", "--model", tiny_model_dir, "--data", f"train={text_files['train']}", "--output",
            str(tmp_path / "out"), "--epochs", "1", "--max-length", "16"]


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("adapters-kit: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_unknown_model_lists_builtins(capsys, tmp_path):
    err = error_of(capsys, ["train", "--model", "./not-a-folder", "--output", str(tmp_path / "o")])
    assert "not a built-in (minilm-l6, mobilenet-v2, whisper-tiny-encoder, smollm2-135m)" in err


def test_uncached_hub_id_says_so(capsys, text_files, tmp_path):
    err = error_of(capsys, ["train", "--model", "someone/not-cached-model", "--data", f"train={text_files['train']}",
                            "--output", str(tmp_path / "o")])
    assert "cannot load model 'someone/not-cached-model'" in err


def test_unknown_column_lists_columns(capsys, train_args, tmp_path):
    err = error_of(capsys, train_args + ["--label-column", "topic"])
    assert "label column 'topic' not found; columns are: text, label" in err
    assert not (tmp_path / "out").exists()


def test_one_class_data(capsys, train_args, tmp_path):
    p = write_csv(tmp_path / "one.csv", [(f"text {i}", "a") for i in range(10)])
    err = error_of(capsys, train_args[:3] + ["--data", p] + train_args[5:])
    assert "only one class" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("content,message", [("", "is empty"), ("\x89PNG\x00\x00\xff\xfe", "cannot read")])
def test_empty_and_unreadable_files(capsys, train_args, tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_bytes(content.encode("latin-1"))
    err = error_of(capsys, train_args[:3] + ["--data", f"train={p}"] + train_args[5:])
    assert message in err and not (tmp_path / "out").exists()


def test_output_holding_another_run_is_refused(capsys, train_args, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_config.json").write_text("{}")
    (out / "metrics.json").write_text('{"keep": 1}')
    err = error_of(capsys, train_args)
    assert "already holds a run; pass --overwrite" in err
    assert json.loads((out / "metrics.json").read_text()) == {"keep": 1}


def test_output_holding_other_files_is_refused_even_with_overwrite(capsys, train_args, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = error_of(capsys, train_args + ["--overwrite"])
    assert "not a run" in err and (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_run(capsys, train_args, tmp_path):
    assert main(train_args) == 0
    first = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert main(train_args + ["--overwrite", "--seed", "7"]) == 0
    assert json.loads((tmp_path / "out" / "train_config.json").read_text())["seed"] == 7 != first["seed"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_bad_flag_values(capsys, train_args):
    assert "epochs must be a positive integer" in error_of(capsys, train_args + ["--epochs", "0"])
    expected = ("unknown method 'adapterfusion'; choose one of: autoencoder-pretrain, contrastive, dann, dora, full, "
                "ia3, joint, loha, lokr, lora, lp-ft, probe, unfreeze-top-k")
    assert expected in error_of(capsys, train_args + ["--method", "adapterfusion"])
    assert "unknown pooling 'max'" in error_of(capsys, train_args + ["--pooling", "max"])


def test_eval_and_predict_errors(capsys, tmp_path):
    assert "does not exist" in error_of(capsys, ["eval", str(tmp_path / "none"), "--data", "bbc-news"])
    (tmp_path / "half").mkdir()
    assert "not a complete run folder" in error_of(capsys, ["predict", str(tmp_path / "half"), "x"])
    assert "nothing to predict" in error_of(capsys, ["predict", str(tmp_path / "half")])


def test_models_and_datasets_list_builtins(capsys):
    assert main(["models"]) == 0
    assert "minilm-l6" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("bbc-news", "20newsgroups", "r8", "r52"))


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "adapters-kit"
    assert exe.exists()
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout


def test_hub_id_resolves_from_the_local_hub_cache(tiny_model_dir, text_files, tmp_path):
    """A Hub id goes through the real from_pretrained(repo_id) path, served offline by a local cache folder."""
    import shutil

    commit = "0" * 40
    snap = tmp_path / "hub" / "models--test-org--tiny-bert" / "snapshots" / commit
    shutil.copytree(tiny_model_dir, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "adapters_kit", "train", "--model", "test-org/tiny-bert", "--data",
                        f"train={text_files['train']}", "--method", "probe", "--epochs", "2", "--output", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "train_config.json").read_text())["model"] == "test-org/tiny-bert"
    r = subprocess.run([sys.executable, "-m", "adapters_kit", "predict", str(out), "team goal"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] in {"business", "sport", "tech"}


def test_dataset_folder_through_load_dataset(tiny_model_dir, text_files, tmp_path, capsys):
    """A local folder of CSV splits goes through datasets.load_dataset(path) like a Hub dataset would."""
    import shutil

    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(text_files["train"], folder / "train.csv")
    shutil.copy(text_files["test"], folder / "test.csv")
    assert main(["train", "--model", tiny_model_dir, "--data", str(folder), "--method", "probe", "--epochs", "2",
                 "--output", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    import pandas as pd

    assert metrics["test"]["n"] == pd.read_csv(text_files["test"])["text"].nunique()  # test keeps its unique texts


def test_every_config_field_but_extra_is_a_flag_and_booleans_are_switches():
    """The flags come from TrainConfig itself: each field (dashes for underscores) with its type; a boolean works
    as ``--x`` / ``--no-x`` (argparse's BooleanOptionalAction) and still takes true / false."""
    import dataclasses

    from adapters_kit import UserError
    from adapters_kit.cli import _overrides, _parser, config_flags
    from adapters_kit.config import TrainConfig, load_config

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert config_flags() == [n for n in fields if n != "extra"]

    def cfg(*flags):
        args = _parser().parse_args(["train", *flags])
        return load_config(None, _overrides(args, config_flags()))

    assert cfg("--compare-source-only").compare_source_only is True
    assert cfg("--no-augment").augment is False and cfg("--augment").augment is True
    assert cfg("--augment", "false").augment is False and cfg("--fast-dropout", "true").fast_dropout is True
    assert cfg("--overwrite").overwrite is True and cfg().augment is None
    assert cfg("--epochs", "3", "--lr", "0.01").epochs == 3
    with pytest.raises(UserError, match="--no-augment: takes no value"):
        cfg("--no-augment", "true")
    with pytest.raises(UserError, match="argument --epochs: invalid int value"):
        cfg("--epochs", "two")
    sweep = _parser().parse_args(["sweep", "--no-flip"])
    assert sweep.flip == "false" and not hasattr(sweep, "resume")
