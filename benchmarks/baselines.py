"""What the benchmark compares adapters_kit against, written with transformers, PEFT and torch alone.

- :class:`EpochClock`: times a ``Trainer`` over the span adapters_kit's ``train_seconds`` covers;
- :class:`MeanPoolClassifier`: a PEFT backbone pooled as adapters_kit pools it, for the ``trainer-mean-pool`` side;
- :func:`probe_reencode`: a linear probe that runs the frozen backbone on every batch of every epoch.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from sklearn.metrics import accuracy_score, f1_score
from splits import read_split
from torch import nn
from transformers import TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput

import adapters_kit

TRAINER_TARGETS = ["query", "value"]
"""The LoRA targets tutorials (and the baseline recipe) use for BERT-family encoders."""


def model_path(name: str) -> str:
    """What ``from_pretrained`` takes for a ``--model`` value: a built-in's packaged folder, else the value itself
    (a checkpoint folder or a Hub id)."""
    return adapters_kit.MODELS[name].path() if name in adapters_kit.MODELS else name


def scores(y_true, y_pred) -> dict[str, Any]:
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "f1_macro": float(f1_score(y_true, y_pred, average="macro")), "test_examples": len(y_true)}


class EpochClock(TrainerCallback):
    """The Trainer's training seconds over adapters_kit's span: the sum of each epoch's ``on_epoch_begin`` ->
    ``on_epoch_end``, that is the epoch's batches (loading and collating included), forward, backward and optimizer
    steps. Building the data loader, the optimizer and ``accelerator.prepare`` come before the first epoch;
    evaluation and saving at an epoch's end come after ``on_epoch_end``. Evaluation or saving inside an epoch (a
    ``steps`` strategy) would count, so :meth:`check` refuses a run where one happened there."""

    def __init__(self):
        self.seconds, self.start, self.inside = 0.0, None, []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self.start
        self.start = None

    def on_evaluate(self, args, state, control, **kwargs):
        if self.start is not None:
            self.inside.append("evaluation")

    def on_save(self, args, state, control, **kwargs):
        if self.start is not None:
            self.inside.append("save")

    def check(self) -> None:
        if self.inside:
            raise RuntimeError(f"{', '.join(self.inside)} ran inside a timed epoch; use the epoch or no strategy")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The average of the hidden states over real (unmasked) tokens."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class MeanPoolClassifier(nn.Module):
    """``backbone`` (a PEFT-wrapped ``AutoModel``) -> mean over real tokens -> dropout -> one linear layer, trained
    with cross-entropy: adapters_kit's default pooling and head, in the shape ``Trainer`` expects (returns the loss
    when given ``labels``)."""

    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.config.hidden_size, num_labels))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        logits = self.head(mean_pool(hidden, attention_mask))
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _probe_settings(spec: dict[str, Any]) -> adapters_kit.TrainConfig:
    """adapters_kit's resolved probe settings for this data (learning rate, batch sizes, weight decay, warmup,
    clipping, head dropout, selection metric), so the baseline differs from it only in re-encoding."""
    cfg = adapters_kit.TrainConfig(model=spec["model"], data=spec["data"], output="-", method="probe",
                                   epochs=spec["epochs"], seed=spec["seed"], max_length=spec["max_length"])
    return adapters_kit.AdapterTrainer(cfg).cfg


def probe_reencode(spec: dict[str, Any]) -> dict[str, Any]:
    """A linear probe over ``spec['epochs']`` epochs that runs the frozen backbone (eval mode, mean pooling) on
    every training and validation batch of every epoch, keeps the head of its best validation epoch and scores
    test: the computation adapters_kit's feature cache replaces. Timed from load to metrics, as the cached sides."""
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    start = time.perf_counter()
    cfg = _probe_settings(spec)
    path = model_path(spec["model"])
    tok, backbone = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval().requires_grad_(False)
    ids = {name: i for i, name in enumerate(spec["labels"])}
    data = {s: read_split(p) for s, p in spec["files"].items()}
    torch.manual_seed(cfg.seed)
    head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(backbone.config.hidden_size, len(ids)))
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(data["train"]) / cfg.batch_size) * cfg.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)

    def features(rows):  # the frozen backbone, run again on every batch it is given
        enc = tok(list(rows["text"]), truncation=True, max_length=cfg.max_length, padding=True, return_tensors="pt")
        with torch.no_grad():
            x = mean_pool(backbone(**enc).last_hidden_state, enc["attention_mask"])
        return x, torch.tensor([ids[label] for label in rows["label"]])

    def evaluate(frame) -> dict[str, Any]:
        head.eval()
        with torch.no_grad():
            pairs = [features(frame.iloc[i:i + cfg.eval_batch_size]) for i in range(0, len(frame), cfg.eval_batch_size)]
            return scores(torch.cat([y for _, y in pairs]), torch.cat([head(x).argmax(-1) for x, _ in pairs]))

    metric = cfg.best_metric if cfg.best_metric in ("accuracy", "f1_macro") else "f1_macro"
    generator = torch.Generator().manual_seed(cfg.seed)
    best, best_state = -math.inf, None
    for _ in range(cfg.epochs):
        head.train()
        order = torch.randperm(len(data["train"]), generator=generator)
        for i in range(0, len(order), cfg.batch_size):
            x, y = features(data["train"].iloc[order[i:i + cfg.batch_size].numpy()])
            nn.functional.cross_entropy(head(x), y).backward()
            nn.utils.clip_grad_norm_(head.parameters(), cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
        score = evaluate(data["validation"])[metric]
        if score > best:
            best, best_state = score, copy.deepcopy(head.state_dict())
    head.load_state_dict(best_state)
    figures = evaluate(data["test"])
    return {"train_seconds": time.perf_counter() - start, **figures,
            "samples": len(data["train"]) * cfg.epochs}
