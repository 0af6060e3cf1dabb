"""The probe's feature cache: a second run does not re-encode; other weights, preprocessing or data do."""

import math

import pytest
import torch
from transformers import BertModel

from adapters_kit import AdapterTrainer
from adapters_kit.evaluation.evaluator import SPEED_KEYS


@pytest.fixture
def count_backbone_calls(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTERS_KIT_CACHE", str(tmp_path / "fresh-cache"))  # no entries from other tests
    calls = []

    def hook(module, args, output):
        if isinstance(module, BertModel):
            calls.append(1)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


def run(cfg, calls):
    calls.clear()
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    sizes = {s: m["n"] for s, m in metrics.items() if s != "train"}
    sizes["train"] = metrics["train"]["train_samples"] // trainer.cfg.epochs
    return metrics, len(calls), sizes


def batches(sizes, splits, bs=64):
    return sum(math.ceil(sizes[s] / bs) for s in splits)


def test_second_run_reads_the_cache_and_changes_invalidate_it(tiny_cfg, tmp_path, count_backbone_calls):
    calls = count_backbone_calls
    first, n1, sizes = run(tiny_cfg(method="probe", output=str(tmp_path / "a")), calls)
    final_eval = batches(sizes, ("validation", "test"))  # the reported metrics always run the whole model
    assert n1 == final_eval + batches(sizes, ("train", "validation"))  # the test split is never cached
    second, n2, _ = run(tiny_cfg(method="probe", output=str(tmp_path / "b")), calls)
    assert n2 == final_eval  # no encoding at all
    for split in ("validation", "test"):
        assert {k: v for k, v in first[split].items() if k not in SPEED_KEYS} == \
            {k: v for k, v in second[split].items() if k not in SPEED_KEYS}
    # different preprocessing (max_length), pooling, or data: encoded again
    _, n3, _ = run(tiny_cfg(method="probe", output=str(tmp_path / "c"), max_length=8), calls)
    assert n3 > final_eval
    _, n4, _ = run(tiny_cfg(method="probe", output=str(tmp_path / "d"), pooling="cls"), calls)
    assert n4 > final_eval
    _, n5, sizes5 = run(tiny_cfg(method="probe", output=str(tmp_path / "e"), max_train_samples=40), calls)
    # only the changed train split is encoded again; validation comes from the cache
    assert n5 == batches(sizes5, ("validation", "test")) + batches(sizes5, ("train",))


def test_damaged_cache_entry_is_rebuilt(tiny_cfg, tmp_path, count_backbone_calls):
    import os
    from pathlib import Path

    run(tiny_cfg(method="probe", output=str(tmp_path / "a"), seed=11, max_length=12), count_backbone_calls)
    root = Path(os.environ["ADAPTERS_KIT_CACHE"]) / "features"
    for entry in root.iterdir():
        for f in entry.glob("*.arrow"):
            f.write_bytes(b"garbage")
    metrics, n, sizes = run(tiny_cfg(method="probe", output=str(tmp_path / "b"), seed=11, max_length=12),
                            count_backbone_calls)
    assert n > batches(sizes, ("validation", "test")) and metrics["test"]["n"] > 0


def test_without_the_cache_the_backbone_runs_every_epoch_and_learns_the_same(tiny_cfg, tmp_path,
                                                                            count_backbone_calls):
    calls = count_backbone_calls
    cached, n_cached, sizes = run(tiny_cfg(method="probe", epochs=3, output=str(tmp_path / "a")), calls)
    plain, n_plain, _ = run(tiny_cfg(method="probe", epochs=3, output=str(tmp_path / "b"), cache_features=False),
                            calls)
    final_eval = batches(sizes, ("validation", "test"))
    # every epoch: all training batches (batch 8) and the validation pass, then test (validation was already
    # scored on the whole model by the loop, with the best weights)
    assert n_plain == 3 * (batches(sizes, ("train",), bs=8) + batches(sizes, ("validation",))) + \
        batches(sizes, ("test",))
    assert n_cached == final_eval + batches(sizes, ("train", "validation"))
    # the frozen backbone stays in eval mode while the head trains, so both see the same features
    for split in ("validation", "test"):
        assert plain[split]["log_loss"] == pytest.approx(cached[split]["log_loss"], rel=1e-4)
        assert plain[split]["confusion_matrix"] == cached[split]["confusion_matrix"]
