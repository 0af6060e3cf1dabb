"""``--method contrastive``: the pair loss, and a few-shot run that tunes the body on pairs and solves its head."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from adapters_kit import AdapterTrainer, TrainConfig, load
from adapters_kit.cli import main
from adapters_kit.methods.contrastive import pair_loss
from tests.conftest import make_texts, write_csv


def reference_pair_loss(emb: np.ndarray, labels: list[int]) -> float:
    """Every unordered pair once: (cos - target)^2, averaged over positives and over negatives, then the two."""
    pos, neg = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        cos = emb[i] @ emb[j] / (np.linalg.norm(emb[i]) * np.linalg.norm(emb[j]))
        (pos if labels[i] == labels[j] else neg).append((cos - (labels[i] == labels[j])) ** 2)
    parts = [np.mean(p) for p in (pos, neg) if p]
    return float(np.mean(parts))


@pytest.mark.parametrize("labels", [[0, 1, 0, 2, 1, 0], [0, 1, 2, 3], [1, 1, 1]])
def test_pair_loss_matches_a_pair_by_pair_computation(labels):
    torch.manual_seed(0)
    emb = torch.randn(len(labels), 8, dtype=torch.float64, requires_grad=True)
    got = pair_loss(emb, torch.tensor(labels))
    assert got.item() == pytest.approx(reference_pair_loss(emb.detach().numpy(), labels), rel=1e-12)
    got.backward()
    assert emb.grad.abs().sum() > 0


def test_pair_loss_of_one_example_is_zero_and_keeps_the_graph():
    emb = torch.randn(1, 4, requires_grad=True)
    loss = pair_loss(emb, torch.tensor([0]))
    loss.backward()
    assert loss.item() == 0 and emb.grad is not None


@pytest.fixture(scope="module")
def few_shot(tiny_model_dir, tmp_path_factory):
    """8 labelled examples per class; 60 test texts."""
    d = tmp_path_factory.mktemp("few")
    rows = make_texts(8, seed=1)[:24]
    seen = {t for t, _ in rows}
    held = [r for r in make_texts(20, seed=2) if r[0] not in seen and not seen.add(r[0])]  # no duplicates
    train, test = write_csv(d / "train.csv", rows), write_csv(d / "test.csv", held)
    return f"train={train},test={test}", d


def train_run(tiny_model_dir, data, out, **kw):
    cfg = TrainConfig(model=tiny_model_dir, data=data, method="contrastive", output=str(out), batch_size=8,
                      max_length=32, **kw)
    return AdapterTrainer(cfg).train()


def test_contrastive_run_tunes_the_body_solves_the_head_and_reloads(few_shot, tiny_model_dir):
    data, d = few_shot
    metrics = train_run(tiny_model_dir, data, d / "run")
    out = d / "run"
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in adapter.items())  # the body moved
    clf = load(out)
    rows = [line.rsplit(",", 1) for line in Path(data.split("test=")[1]).read_text().splitlines()[1:]]
    predicted = [p["label"] for p in clf([t for t, _ in rows])]
    accuracy = np.mean([p == y for p, (_, y) in zip(predicted, rows)])
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert torch.equal(clf.logits(["match goal team"]), load(out).logits(["match goal team"]))
    info = json.loads((out / "metrics.json").read_text())
    assert info["train"]["pairs_stage"]["epochs"] == 10  # the method's default
    cfg = json.loads((out / "train_config.json").read_text())
    assert (cfg["method"], cfg["adapter"]) == ("contrastive", "lora")


def test_contrastive_runs_are_identical_for_a_seed(few_shot, tiny_model_dir):
    data, d = few_shot
    for name in ("a", "b"):
        train_run(tiny_model_dir, data, d / name, epochs=2)
    for f in ("adapter_model.safetensors", "head.safetensors"):
        a, b = load_file(str(d / "a" / f)), load_file(str(d / "b" / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_label_with_one_example_is_refused_in_one_line(tiny_model_dir, tmp_path, capsys):
    rows = make_texts(4, seed=1)[:12] + [("market bank", "lonely")]
    train = write_csv(tmp_path / "train.csv", rows)
    out = tmp_path / "run"
    code = main(["train", "--model", tiny_model_dir, "--data", train, "--method", "contrastive", "--output",
                 str(out), "--max-length", "16"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.strip().splitlines()[-1] == ("adapters-kit: error: --method contrastive needs at least 2 training "
                                            "examples of every label; too few of 'lonely' (1): add examples or use "
                                            "another method")


def test_a_regression_task_is_refused(tiny_model_dir, tmp_path, capsys):
    rows = [(t, str(i % 5 * 0.5)) for i, (t, _) in enumerate(make_texts(6, seed=1))]
    train = write_csv(tmp_path / "train.csv", rows, header=("text", "score"))
    code = main(["train", "--model", tiny_model_dir, "--data", train, "--method", "contrastive", "--task",
                 "regression", "--output", str(tmp_path / "run")])
    assert code == 2
    assert "--method contrastive solves its head as a logistic regression, which does not fit task regression" \
        in capsys.readouterr().err


@pytest.mark.integration
def test_eight_sms_per_class_reach_the_published_figure(tmp_path):
    """benchmarks/fewshot.py's first draw on SMS spam (0.947 test accuracy published; the probe drew 0.626)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fewshot import draw
    from splits import read_split, write_splits

    splits = write_splits("sms-spam", tmp_path / "splits", 0)
    few = tmp_path / "few.parquet"
    draw(read_split(splits["files"]["train"]), 8, 0).to_parquet(few)
    metrics = AdapterTrainer(TrainConfig(data=f"train={few},test={splits['files']['test']}", method="contrastive",
                                         output=str(tmp_path / "run"), seed=0)).train()
    assert metrics["test"]["accuracy"] >= 0.93
