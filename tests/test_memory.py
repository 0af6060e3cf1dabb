"""Freed heap memory goes back to the OS where a run's memory changes shape (``adapters_kit.memory``)."""

import os
import platform

import torch

from adapters_kit import AdapterTrainer
from adapters_kit.evaluation import evaluator
from adapters_kit.memory import TRIM_FIRST_STEPS, release_freed_memory
from adapters_kit.train import loop


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_release_gives_the_free_heap_pages_back_to_the_os():
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # 250 MB of heap pieces, each below glibc's mmap threshold
    del blocks[:-1]  # the last piece stays allocated: the heap cannot shrink from its top by itself
    before = _rss_mb()
    released = release_freed_memory()
    if platform.libc_ver()[0] != "glibc":
        assert released is False  # nothing to call: a no-op, not an error
        return
    assert released is True
    assert before - _rss_mb() > 200, "the 250 MB freed above should have left the process"


def test_training_trims_after_its_first_steps_and_after_each_evaluation(tiny_cfg, tmp_path, monkeypatch):
    calls = {"loop": 0, "evaluation": 0}

    def counter(where):
        def count():
            calls[where] += 1
            return True
        return count

    monkeypatch.setattr(loop, "release_freed_memory", counter("loop"))
    monkeypatch.setattr(evaluator, "release_freed_memory", counter("evaluation"))
    trainer = AdapterTrainer(tiny_cfg(method="lora", epochs=2, output=str(tmp_path / "r")))
    metrics = trainer.train()
    steps = metrics["train"]["train_samples"] // trainer.cfg.batch_size
    assert steps > TRIM_FIRST_STEPS  # so the count below is the cap, not the run's length
    assert calls["loop"] == TRIM_FIRST_STEPS
    final = [s for s in metrics if s not in ("train", "validation")]  # validation was scored during training
    assert calls["evaluation"] == 2 + len(final)  # one validation pass per epoch, then each remaining split


def test_trimming_leaves_the_trained_weights_bit_identical(tiny_cfg, tmp_path, monkeypatch):
    """malloc_trim hands back only pages no live object uses: the same short training run ends with exactly the
    same weights whether the trims run or a no-op stands in for them."""
    calls = {"real": [], "no-op": 0}

    def real():
        calls["real"].append(release_freed_memory())
        return calls["real"][-1]

    def noop():
        calls["no-op"] += 1
        return False

    def trained(release, name):
        monkeypatch.setattr(loop, "release_freed_memory", release)
        monkeypatch.setattr(evaluator, "release_freed_memory", release)
        trainer = AdapterTrainer(tiny_cfg(method="lora", epochs=2, output=str(tmp_path / name)))
        trainer.train()
        return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    trimmed, untrimmed = trained(real, "trimmed"), trained(noop, "untrimmed")
    assert calls["real"] and calls["no-op"] == len(calls["real"])  # both runs reached the same trim points
    if platform.libc_ver()[0] == "glibc":
        assert all(calls["real"])  # the first run really trimmed
    assert trimmed.keys() == untrimmed.keys()
    different = [k for k in trimmed if not torch.equal(trimmed[k], untrimmed[k])]
    assert not different, f"weights differ with and without trimming: {different[:5]}"
