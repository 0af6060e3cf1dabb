"""Tasks across the other axes: multi-label and regression on images (tables of file paths), the domain methods
(DANN, joint) with a regression or multi-label target task, and the tag-set checks of token classification."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from adapters_kit import load
from adapters_kit.cli import main
from adapters_kit.errors import UserError
from adapters_kit.tasks import task_class
from tests.conftest import write_csv
from tests.modality_fixtures import COLOURS, blob_image, build_family
from tests.test_tasks import ml_rows, reg_rows


@pytest.fixture(scope="module")
def image_table(tmp_path_factory):
    """Colour blobs in a folder and a table per task: the red level as a number, the colour as a one-label list
    (and ``bright`` as a second label for the lighter half)."""
    root = tmp_path_factory.mktemp("image_table")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(48):
        name, colour = list(COLOURS.items())[i % 3]
        light = int(rng.integers(0, 60))
        im = blob_image(tuple(min(255, c + light) for c in colour), rng, (32, 32))
        im.save(root / f"{i:03d}.png")
        rows.append({"image": f"{i:03d}.png", "score": colour[0] / 100 + light / 60 + rng.uniform(-0.05, 0.05),
                     "labels": [name] + (["bright"] if light > 30 else [])})
    reg = write_csv(root / "reg.csv", [(r["image"], f"{r['score']:.4f}") for r in rows], header=("image", "score"))
    ml = root / "ml.jsonl"
    ml.write_text("".join(json.dumps({"image": r["image"], "labels": r["labels"]}) + "\n" for r in rows))
    return {"regression": reg, "multi-label": str(ml), "model": build_family("vit", str(root / "vit"))}


@pytest.mark.parametrize("task, metric", [("regression", "pearson"), ("multi-label", "f1_micro")])
def test_image_tables_train_each_task_and_reload_identically(image_table, tmp_path, task, metric):
    out = tmp_path / "run"
    assert main(["train", "--model", image_table["model"], "--data", image_table[task], "--method", "probe",
                 "--epochs", "10", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "train_config.json").read_text())["task"] == task
    assert metrics["validation"][metric] is not None and metrics["validation"]["n"] > 0
    clf = load(out)
    paths = [os.path.join(os.path.dirname(image_table[task]), f"{i:03d}.png") for i in range(4)]
    torch.testing.assert_close(clf.logits(paths), clf.logits(paths[:2] + paths[2:]), atol=0, rtol=0)
    assert len(clf(paths)) == 4


@pytest.mark.parametrize("method", ["dann", "joint"])
@pytest.mark.parametrize("task", ["regression", "multi-label"])
def test_domain_methods_train_a_regression_or_multilabel_target(tiny_model_dir, tmp_path, method, task):
    if task == "regression":
        data = write_csv(tmp_path / "d.csv", reg_rows(60, 1), header=("text", "score"))
    else:
        data = str(tmp_path / "d.jsonl")
        (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ml_rows(60, 1)))
    other = write_csv(tmp_path / "other.csv", [(t, "a" if i % 2 else "b") for i, (t, _) in
                                                enumerate(reg_rows(40, 2))])
    aux = ["--target-data", other] if method == "dann" else ["--source-data", other]
    out = tmp_path / "run"
    assert main(["train", "--model", tiny_model_dir, "--data", data, "--method", method, "--adapter", "lora",
                 *aux, "--epochs", "1", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    best = json.loads((out / "train_config.json").read_text())["best_metric"]
    assert best == task_class(task).best_metric and metrics["validation"][best] is not None
    assert len(load(out)(["match goal team"])) == 1


def test_a_tag_set_mixing_schemes_is_refused():
    with pytest.raises(UserError, match="tag column 'tags': tag set mixes entity tags .* with tags without a"):
        task_class("token-classification").fit([("B-PER", "NOUN", "O")], None, "tags")
    with pytest.raises(UserError, match="tagging needs two or more"):
        task_class("token-classification").fit([("O", "O")], None, "tags")
