"""How an exported artefact compares with the run it came from on real batches: speed, the task's headline metric,
and how often the two decide alike."""

from __future__ import annotations

from typing import Any

import torch

from adapters_kit.evaluation.timing import in_turns
from adapters_kit.runs.checkpoint import LoadedRun


def split_batches(run: LoadedRun, data: str, split: str, max_samples: int | None,
                  batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """The evaluation batches of ``split`` of ``data`` (columns and labels as the run was trained): its first
    ``max_samples`` examples."""
    from adapters_kit.data.splits import load_splits, make_loader, prepare

    cfg = run.data_config(data)
    ds = load_splits(cfg, run.modality, labels=run.labels).split(split, data)
    if max_samples:
        ds = ds.select(range(min(max_samples, len(ds))))
    loader = make_loader(prepare(ds, run.modality, run.processor),
                         run.modality.collator(run.processor), batch_size, shuffle=False)
    return list(loader)


def measure(rows: list[dict], batches: list[dict[str, torch.Tensor]], where: str, task: Any) -> list[str]:
    """Fill each row's ``examples_per_second`` and ``score`` (the task's headline metric, ``metric``, when the
    batches carry labels) over ``batches`` (read from ``where``); returns lines comparing each artefact's
    predictions with the first row's (the run's)."""
    labels = [b.pop("labels") for b in batches] if "labels" in batches[0] else None
    seconds, outs = in_turns([row["predict"] for row in rows], [batches] * len(rows))
    outputs = [_stacked([o.float() for o in out]) for out in outs]
    metric = task.card_columns[0]
    for row, out, elapsed in zip(rows, outputs, seconds):
        row["examples_per_second"] = len(out) / max(elapsed, 1e-9)
        row["metric"], row["score"] = metric, None
        if labels:
            scores = task.metrics(exported=True)
            scores.update(out.numpy(), torch.cat(labels).numpy())
            row["score"] = scores.compute()[metric]
    lines = []
    for row, out in zip(rows[1:], outputs[1:]):
        # decisions are compared where one output per input decides one thing (a label, a set of labels)
        decides = not task.word_inputs and _decision(task.decode(out[:1])[0]) is not None
        same = [_decision(a) == _decision(b) for a, b in zip(task.decode(out), task.decode(outputs[0]))] \
            if decides else []
        change = "" if row["score"] is None else f"{metric} change {row['score'] - rows[0]['score']:+.4f}, "
        agree = f"same prediction for {100 * sum(same) / len(same):.1f}%, " if same else ""
        lines.append(f"{row['artefact']} vs run on {len(out)} examples of {where}: {change}{agree}max abs output "
                     f"difference {float((out - outputs[0]).abs().max()):.2e}")
    return lines


def _stacked(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Batches of outputs as one tensor; per-token outputs (batch, tokens, tags) zero-padded to the longest."""
    width = max(o.shape[1] for o in outputs) if outputs[0].dim() == 3 else 0
    return torch.cat([torch.nn.functional.pad(o, (0, 0, 0, width - o.shape[1])) if width else o for o in outputs])


def _decision(prediction: Any) -> Any:
    """What a prediction decides: its label, the set of its labels, or None for a number (compared by value)."""
    if isinstance(prediction, list):
        return frozenset(d["label"] for d in prediction)
    return prediction.get("label")
