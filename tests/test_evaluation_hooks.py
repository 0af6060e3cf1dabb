"""Evaluation during and after training: distributed correctness, hooks, reports, error analysis."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from adapters_kit import AdapterTrainer, evaluate_run
from adapters_kit.cli import main
from adapters_kit.evaluation.evaluator import SPEED_KEYS, evaluate
from tests.evaluation_fixture import BATCH, TASK_NAMES, N, fixed_loader, fixture_task, identity_model

ROOT = Path(__file__).parents[1]
NEW_KEYS = ("top_k_accuracy", "roc_auc", "log_loss", "ece", "examples_per_second", "latency_ms_p50",
            "latency_ms_p95")


def test_two_processes_give_exactly_the_single_process_metrics(tmp_path):
    """Every task's streaming metrics: 2 processes (with the sampler's padding dropped) == 1 process, exactly."""
    assert N % (2 * BATCH) != 0  # the distributed sampler must pad the last batch
    single = {}
    for name in TASK_NAMES:
        found = evaluate(identity_model(), fixed_loader(name), Accelerator(cpu=True), fixture_task(name))
        single[name] = {k: v for k, v in found.items() if k not in SPEED_KEYS}
    out = tmp_path / "two.json"
    # `--multi_gpu` starts torchrun; with no CUDA the script's Accelerator(cpu=True) joins a gloo group. (Plain
    # `accelerate launch --cpu --num_processes 2` runs a single process unless mpirun is configured.)
    r = subprocess.run([str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                        "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "tests/dist_eval_script.py", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads(out.read_text())
    assert two["world"] == 2
    for name in TASK_NAMES:
        assert two["metrics"][name]["n"] == N == single[name]["n"], name
        assert two["metrics"][name] == json.loads(json.dumps(single[name])), name  # every key, exactly
    assert single["multi-label"]["f1_micro"] > 0.5 and single["regression"]["pearson"] > 0.5  # not degenerate
    assert 0.5 < single["token-classification"]["entity_f1"] < 1.0


def test_a_plain_loader_is_counted_whole_after_a_prepared_loader_was_broken_off_at_its_end():
    # A training loop that stops at max_steps on an epoch's last batch leaves accelerate's shared state saying
    # "end of a loader with 2 real samples in its last batch"; gather_for_metrics on an unprepared loader read that.
    accelerator = Accelerator(cpu=True)
    other = accelerator.prepare(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(10)),
                                                            batch_size=4))
    for i, _ in enumerate(other):
        if i == len(other) - 1:
            break
    assert accelerator.gradient_state.end_of_dataloader and accelerator.gradient_state.remainder == 2
    out = evaluate(identity_model(), fixed_loader(), Accelerator(cpu=True), fixture_task())
    logits, labels = fixed_loader().dataset.tensors
    assert out["n"] == N
    assert out["accuracy"] == pytest.approx(int((logits.argmax(1) == labels).sum()) / N, abs=1e-12)


@pytest.fixture(scope="module")
def hooked_run(tiny_model_dir, tmp_path_factory):
    from adapters_kit import TrainConfig
    from tests.conftest import make_texts, write_csv

    d = tmp_path_factory.mktemp("hooks")
    train = write_csv(d / "train.csv", make_texts(30, seed=1))
    test = write_csv(d / "test.csv", make_texts(6, seed=2))
    cfg = TrainConfig(model=tiny_model_dir, data=f"train={train},test={test}", method="lora", output=str(d / "run"),
                      epochs=2, batch_size=8, max_length=32, lr=5e-3, eval_steps=4, eval_splits="validation,test")
    trainer = AdapterTrainer(cfg)
    return trainer, trainer.train(), Path(cfg.output), test


def test_eval_every_n_steps_and_each_epoch_on_chosen_splits(hooked_run):
    trainer, metrics, out, _ = hooked_run
    info = json.loads((out / "run_info.json").read_text())
    history = info["history"]
    per_epoch = -(-info["data_report"]["sizes"]["train"] // 8)
    expected = sorted(set(range(4, 2 * per_epoch + 1, 4)) | {per_epoch, 2 * per_epoch})  # every 4 + epoch ends
    val_steps = [h["global_step"] for h in history if h["split"] == "validation"]
    assert val_steps == expected  # and none twice
    assert [h["global_step"] for h in history if h["split"] == "test"] == val_steps
    assert metrics["train"]["best_step"] in val_steps


def test_every_split_has_the_new_keys(hooked_run):
    _, metrics, out, _ = hooked_run
    saved = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        for key in NEW_KEYS:
            assert key in saved[split], (split, key)
        assert saved[split]["examples_per_second"] > 0 and saved[split]["latency_ms_p95"] >= saved[split][
            "latency_ms_p50"] > 0
        assert 0 <= saved[split]["ece"] <= 1 and saved[split]["log_loss"] > 0


def test_early_stopping_restores_best(tiny_cfg):
    trainer = AdapterTrainer(tiny_cfg(method="probe", lr=1e-9, epochs=6, early_stopping_patience=2))
    metrics = trainer.train()
    history = [h for h in json.loads((Path(trainer.cfg.output) / "run_info.json").read_text())["history"]]
    assert metrics["train"]["stopped_early"] is True
    assert len(history) == 3  # the first evaluation, then two without progress
    assert metrics["train"]["best_epoch"] == 1


def png_ok(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.exists() and path.stat().st_size > 10_000, path
    img = mpimg.imread(path)
    assert img.shape[0] > 250 and img.shape[1] > 250
    assert np.asarray(img)[..., :3].std() > 0.05  # not a blank canvas


def test_report_pngs_are_written_and_regenerated(hooked_run, capsys):
    _, _, out, _ = hooked_run
    pngs = ["confusion_matrix.png", "confusion_matrix_normalized.png", "reliability.png", "curves.png"]
    for name in pngs:
        png_ok(out / name)
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "roc_auc" in printed and "latency_ms_p95" in printed
    for name in pngs:
        png_ok(out / name)


def test_compare_prints_runs_side_by_side(hooked_run, tiny_cfg, capsys):
    _, _, out, _ = hooked_run
    other = AdapterTrainer(tiny_cfg(method="probe", epochs=2))
    other.train()
    assert main(["compare", str(out), other.cfg.output]) == 0
    printed = capsys.readouterr().out
    assert "lora" in printed and "probe" in printed and "f1_macro" in printed


def test_errors_csv_lists_most_confident_mistakes(hooked_run):
    trainer, _, out, test_csv = hooked_run
    metrics = evaluate_run(out, trainer.cfg.data, "test", batch_size=5, errors=4)
    rows = list(csv.DictReader(open(out / "errors_test.csv")))
    wrong = round(metrics["n"] * (1 - metrics["accuracy"]))
    assert len(rows) == min(4, wrong) and rows
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    texts = set(open(test_csv).read().splitlines())
    for r in rows:
        # evaluation batches run longest first: the index each row carries still finds its own text and label
        assert r["true"] != r["predicted"] and any(line.startswith(r["input"]) and line.endswith(f",{r['true']}")
                                                   for line in texts)
    assert "mistakes" not in json.loads((out / "metrics.json").read_text())["test"]


def test_offline_evaluate_modules_match_the_streaming_metrics():
    import evaluate

    from adapters_kit import StreamingMetrics, evaluate_module

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    x = rng.normal(size=(60, 3)) + 2 * np.eye(3)[y]
    direct = StreamingMetrics(["a", "b", "c"], top_k=2)
    direct.update(x, y)
    via = evaluate.load(evaluate_module("classification")).compute(predictions=x, references=y,
                                                                   labels=["a", "b", "c"], top_k=2)
    assert via == direct.compute()  # float64 through Arrow: the same numbers exactly
    pred = x.argmax(1)
    assert evaluate.load(evaluate_module("accuracy")).compute(predictions=pred, references=y)["accuracy"] == \
        pytest.approx((pred == y).mean())
    from sklearn.metrics import f1_score

    assert evaluate.load(evaluate_module("f1")).compute(predictions=pred, references=y, average="macro")["f1"] == \
        pytest.approx(f1_score(y, pred, average="macro"))


def test_memory_stays_bounded_as_predictions_grow():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from eval_memory import run

    small, big = run(20_000, 1000, 1000), run(100_000, 1000, 1000)
    assert big["roc_auc_approximate"] and 0.9 < big["roc_auc"] <= 1
    assert big["peak_mb"] < 400 and big["peak_mb"] < 1.3 * small["peak_mb"] + 20  # flat in n, not linear
