"""DANN and the joint loss: the gradient reversal, the schedule, target labels never used, the source-only
baseline at the same budget, and the one-line errors for bad combinations."""

import random

import pytest
import torch
from safetensors.torch import load_file

from adapters_kit import AdapterTrainer, TrainConfig, UserError
from adapters_kit.evaluation.evaluator import SPEED_KEYS
from adapters_kit.methods import validate
from adapters_kit.methods.domain import GradientReversal, dann_lambda, join
from tests.conftest import FILLER, make_texts, write_csv


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    grl = GradientReversal()
    grl.weight = 0.25
    y = grl(x)
    assert torch.equal(y, x)
    (y * torch.arange(12.0).view(3, 4)).sum().backward()
    assert torch.allclose(x.grad, -0.25 * torch.arange(12.0).view(3, 4))


def test_dann_schedule_rises_from_zero_to_one():
    assert dann_lambda(0.0) == 0.0 and 0.99 < dann_lambda(1.0) < 1.0
    assert dann_lambda(0.1) < dann_lambda(0.5) < dann_lambda(0.9)


def test_join_pads_sequences_to_the_longer_batch():
    a = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    b = {"input_ids": torch.full((1, 5), 7), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    out = join(a, b)
    assert out["input_ids"].shape == (3, 5) and out["attention_mask"][:2, 3:].sum() == 0
    assert out["input_ids"][2].tolist() == [7] * 5


@pytest.fixture
def target_file(tmp_path):
    """Target-domain texts: the same topics with other filler words (a vocabulary shift), plus labels that DANN
    must never read."""
    rows = [(" ".join(t.split()[::-1] + random.Random(i).choices(FILLER, k=3)), lab)
            for i, (t, lab) in enumerate(make_texts(12, seed=9))]
    return rows, tmp_path


def dann_cfg(tiny_cfg, target, out, **kw):
    return tiny_cfg(method="dann", adapter="lora", target_data=target, output=out, lora_dropout=0.0, **kw)


def test_dann_never_reads_target_labels_and_trains_the_adapter_and_domain_head(tiny_cfg, target_file):
    rows, tmp = target_file
    a_file = write_csv(tmp / "target_a.csv", rows)
    shuffled = [r[1] for r in rows]
    random.Random(0).shuffle(shuffled)
    b_file = write_csv(tmp / "target_b.csv", [(r[0], lab) for r, lab in zip(rows, shuffled)])
    a = AdapterTrainer(dann_cfg(tiny_cfg, a_file, str(tmp / "a")))
    metrics = a.train()
    b = AdapterTrainer(dann_cfg(tiny_cfg, b_file, str(tmp / "b")))
    b.train()
    trained = {n for n, p in a.model.named_parameters() if p.requires_grad}
    assert any(n.startswith("aux_heads.domain.") for n in trained)
    assert all(n.startswith(("head.", "aux_heads.")) or "lora_" in n for n in trained)
    for name, p in a.model.named_parameters():
        assert torch.equal(p, dict(b.model.named_parameters())[name]), name
    for f in ("adapter_model.safetensors", "head.safetensors"):
        sa, sb = load_file(str(tmp / "a" / f)), load_file(str(tmp / "b" / f))
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert metrics["test"]["n"] > 0
    # the domain head is not part of the saved run: it reloads as a plain LoRA classifier
    from adapters_kit import load

    torch.testing.assert_close(load(str(tmp / "a")).logits(["team goal"]), a.classifier().logits(["team goal"]),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["dann", "joint"])
def test_an_interrupted_objective_run_resumes_to_the_same_weights(method, tiny_cfg, target_file, monkeypatch):
    """Ctrl-C mid-epoch, then --resume: the auxiliary batches (DANN's target, the joint source) continue where they
    were, so the run ends with exactly the weights of an uninterrupted one."""
    import os
    import signal

    from adapters_kit.errors import TrainingInterrupted
    from adapters_kit.methods.domain import DomainAdversarial, Joint

    rows, tmp = target_file
    aux = write_csv(tmp / "aux.csv", rows)
    kw = {"target_data": aux} if method == "dann" else {"source_data": aux}

    def cfg(out, **more):
        return tiny_cfg(method=method, adapter="lora", lora_dropout=0.0, output=str(tmp / out), **kw, **more)

    AdapterTrainer(cfg("whole")).train()
    cls = DomainAdversarial if method == "dann" else Joint
    original, calls = cls.loss, []

    def interrupt_at_step_7(self, *args):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGINT)  # the loop's handler only flags it; the step finishes, then saves
        return original(self, *args)

    monkeypatch.setattr(cls, "loss", interrupt_at_step_7)
    with pytest.raises(TrainingInterrupted):
        AdapterTrainer(cfg("cut")).train()
    monkeypatch.setattr(cls, "loss", original)
    assert (tmp / "cut" / "checkpoint-7").is_dir()
    AdapterTrainer(cfg("cut", resume=True)).train()
    for f in ("adapter_model.safetensors", "head.safetensors"):
        whole, resumed = load_file(str(tmp / "whole" / f)), load_file(str(tmp / "cut" / f))
        assert all(torch.equal(whole[k], resumed[k]) for k in whole), f


def test_compare_source_only_is_the_same_adapter_without_the_domain_loss(tiny_cfg, target_file):
    rows, tmp = target_file
    target = write_csv(tmp / "target.csv", rows)
    metrics = AdapterTrainer(dann_cfg(tiny_cfg, target, str(tmp / "d"), compare_source_only=True)).train()
    plain = AdapterTrainer(tiny_cfg(method="lora", lora_dropout=0.0, output=str(tmp / "p"))).train()
    scored = {k: v for k, v in metrics["test_source_only"].items() if k not in SPEED_KEYS}
    assert scored == {k: v for k, v in plain["test"].items() if k not in SPEED_KEYS}
    assert not list(tmp.glob(".d.source-only*")), "the baseline's folder is removed"


def test_joint_trains_a_source_head_beside_the_target_head(tiny_cfg, tmp_path):
    source = [(t, "urgent" if i % 2 else "calm") for i, (t, _) in enumerate(make_texts(10, seed=5))]
    src = write_csv(tmp_path / "source.csv", source)
    trainer = AdapterTrainer(tiny_cfg(method="joint", source_data=src, joint_lambda=0.5, output=str(tmp_path / "j")))
    metrics = trainer.train()
    heads = {n: p for n, p in trainer.model.named_parameters() if n.startswith("aux_heads.source.")}
    assert heads and all(p.requires_grad for p in heads.values())
    assert heads["aux_heads.source.1.weight"].shape[0] == 2  # the source task's two labels
    assert trainer.model.head[1].weight.shape[0] == 3 and metrics["test"]["n"] > 0
    assert "source.csv" not in str(metrics)


@pytest.mark.parametrize("kw,message", [
    ({"method": "dann"}, "dann needs --target-data"),
    ({"method": "joint"}, "joint needs --source-data"),
    ({"method": "dann", "target_data": "t.csv", "adapter": "probe"}, "--adapter probe cannot be trained by dann"),
    ({"method": "joint", "source_data": "s.csv", "joint_lambda": -1.0}, "joint_lambda must be >= 0"),
])
def test_bad_combinations_fail_at_start(kw, message):
    with pytest.raises(UserError, match=message):
        validate(TrainConfig(**kw))


def test_unknown_method_lists_objectives_too(tiny_cfg):
    with pytest.raises(UserError, match="unknown method 'danny'; choose one of: .*dann.*joint"):
        AdapterTrainer(tiny_cfg(method="danny"))
