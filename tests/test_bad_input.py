"""Bad input, one table: each case is a command line, the one-line message it must print, exit code 2, no
traceback, no output folder left behind, and a snapshot of the file system before and after: nothing changed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from adapters_kit.cli import main
from tests.cli_cases import assert_one_line_error
from tests.conftest import write_csv
from tests.modality_fixtures import build_family, write_image_folder


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    """Files every case draws on, made once."""
    root = tmp_path_factory.mktemp("bad")
    rows = [(f"match goal team {i}", "sport") if i % 2 else (f"market shares profit {i}", "business")
            for i in range(40)]
    w = {"model": tiny_model_dir, "root": root,
         "train": write_csv(root / "train.csv", rows),
         "one_class": write_csv(root / "one.csv", [(t, "sport") for t, _ in rows]),
         "numbers": write_csv(root / "numbers.csv", [(str(i), lab) for i, (_, lab) in enumerate(rows)],
                              header=("id", "label")),
         "empty": str(root / "empty.csv"), "binary": str(root / "binary.csv"), "vit": str(root / "vit")}
    (root / "empty.csv").write_text("")
    (root / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (root / "vit").mkdir()
    build_family("vit", str(root / "vit"))
    images = write_image_folder(str(root / "images"), {"train": 5, "test": 2})
    for i in range(3):
        (root / "images" / "train" / "red" / f"bad{i}.png").write_bytes(b"not a png")
    w["images"] = images
    (root / "odd").mkdir()
    (root / "odd" / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    # a finished probe run, for eval / predict cases
    assert main(["train", "--model", tiny_model_dir, "--data", w["train"], "--method", "lora", "--epochs", "1",
                 "--output", str(root / "run")]) == 0
    # the same run pointing at a base model of another shape (ViT instead of the tiny BERT)
    shutil.copytree(root / "run", root / "mismatch")
    info = json.loads((root / "mismatch" / "run_info.json").read_text())
    info["backbone_path"] = w["vit"]
    (root / "mismatch" / "run_info.json").write_text(json.dumps(info))
    # audio at an odd rate, in stereo: fine input, so it is not in the table (see the last test)
    sf.write(root / "odd_rate.wav", np.zeros((11025, 2), np.float32), 11025)
    return w


def train(w, *extra, data="train", model="model"):
    return ["train", "--model", w[model], "--data", w[data] if data in w else data, "--output",
            str(w["root"] / "out"), *extra]


CASES = [
    ("missing data file", lambda w: train(w, data="train=/nowhere/a.csv"), "does not exist"),
    ("empty data file", lambda w: train(w, data=f"train={w['empty']}"), "is empty"),
    ("corrupt data file", lambda w: train(w, data=f"train={w['binary']}"), "check the file format"),
    ("wrong text column", lambda w: train(w, "--text-column", "body"), "text column 'body' not found"),
    ("wrong label column", lambda w: train(w, "--label-column", "y2"), "label column 'y2' not found"),
    ("one class", lambda w: train(w, data=f"train={w['one_class']}"), "has only one class"),
    ("no text column", lambda w: train(w, data=f"train={w['numbers']}"), "no text column found"),
    ("images that are not images", lambda w: train(w, "--method", "probe", data="images", model="vit"),
     "cannot be read as images"),
    ("image data for a text model", lambda w: train(w, data="images"), "holds image but model"),
    ("model that does not exist", lambda w: ["train", "--model", "/no/such/model", "--data", w["train"],
                                             "--output", str(w["root"] / "out")], "unknown model"),
    ("unsupported architecture", lambda w: ["train", "--model", str(w["root"] / "odd"), "--data", w["train"],
                                            "--output", str(w["root"] / "out")], "cannot load"),
    ("dann without target data", lambda w: train(w, "--method", "dann"), "dann needs --target-data"),
    ("resume and overwrite together", lambda w: train(w, "--resume", "--overwrite"), "choose one"),
    ("negative learning rate", lambda w: train(w, "--lr", "-1"), "lr must be > 0"),
    ("dropout out of range", lambda w: train(w, "--lora-dropout", "1.5"), "lora_dropout must be in [0, 1)"),
    ("rank larger than the layer", lambda w: train(w, "--lora-r", "512"), "larger than layer"),
    ("unknown method", lambda w: train(w, "--method", "magic"), "unknown method 'magic'"),
    ("lbfgs with lora", lambda w: train(w, "--probe-solver", "lbfgs"), "--probe-solver lbfgs fits a linear head"),
    ("output is an existing run", lambda w: ["train", "--model", w["model"], "--data", w["train"], "--output",
                                             str(w["root"] / "run")], "already holds a run"),
    ("eval of a folder that is not a run", lambda w: ["eval", str(w["root"]), "--data", w["train"]],
     "is not a complete run folder"),
    ("eval on a split the data lacks", lambda w: ["eval", str(w["root"] / "run"), "--data", w["train"], "--split",
                                                  "dev2"], "has no split 'dev2'"),
    ("export measured on a split the data lacks", lambda w: ["export", str(w["root"] / "run"), "--to", "int8",
                                                             "--output", str(w["root"] / "out"), "--data",
                                                             w["train"], "--split", "dev2"], "has no split 'dev2'"),
    ("adapter whose base model does not match", lambda w: ["predict", str(w["root"] / "mismatch"), "hello"],
     "does not match"),
    ("output where nothing can be written", lambda w: ["train", "--model", w["model"], "--data", w["train"],
                                                      "--output", "/proc/adapters_kit_run"], "cannot be written"),
    ("predict with nothing to predict", lambda w: ["predict", str(w["root"] / "run")], "nothing to predict"),
]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(world, capsys, name, argv, message):
    """Every file under the world's folder (the data, the finished runs) is as it was, and no output appears."""
    assert_one_line_error(main, argv(world), message, capsys, world["root"])
    assert not (world["root"] / "out").exists()


def test_a_full_disk_while_saving_is_one_line_and_leaves_nothing(world, capsys, monkeypatch, tmp_path):
    """The run folder is written at the end; if the disk fills then, the user gets one line, not a traceback, and
    no half-written folder."""
    import errno

    import adapters_kit.runs.checkpoint as checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_json", full)
    out = tmp_path / "run"
    code = main(["train", "--model", world["model"], "--data", world["train"], "--method", "probe", "--epochs", "1",
                 "--output", str(out)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # above it: the training progress bar
    assert code == 2 and "Traceback" not in err and last.startswith("adapters-kit: error: could not write")
    assert "No space left on device" in last and "nothing was written" in last
    # only the loop's checkpoints remain (so --resume can finish the job), no run files, no temporary folder
    assert [p.name.split("-")[0] for p in out.iterdir()] == ["checkpoint"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_odd_sample_rates_and_stereo_are_not_errors(world):
    from adapters_kit.data.media import read_audio

    wave = read_audio(str(world["root"] / "odd_rate.wav"), 16000)
    assert wave.shape == (16000,)
