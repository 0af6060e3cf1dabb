"""Inference speed of several models side by side on the same inputs (each read by its own processor)."""

from __future__ import annotations

from typing import Any

import torch

from adapters_kit.data.splits import make_loader, prepare
from adapters_kit.errors import UserError
from adapters_kit.evaluation.timing import in_turns

BATCH_SIZE = 32


def input_batches(inputs: Any, modality: Any, processor: Any, batch_size: int = BATCH_SIZE) -> list[dict]:
    """The batches a model of ``modality`` reads for the ``input`` column of ``inputs``, in row order."""
    prepared = prepare(inputs.select_columns(["input"]), modality, processor)
    return list(make_loader(prepared, modality.collator(processor), batch_size, shuffle=False))


def examples_per_second(models: list[tuple[torch.nn.Module, list[dict]]]) -> list[float]:
    """Each model's examples/s over its batches (the same inputs for every model), timed in turns
    (:func:`adapters_kit.evaluation.timing.in_turns`)."""
    seconds, _ = in_turns([lambda b, m=model.eval(): m(**b) for model, _ in models], [b for _, b in models])
    count = sum(len(next(iter(b.values()))) for b in models[0][1])
    return [count / max(s, 1e-9) for s in seconds]


def measure_runs(run_dirs: list, split: str = "test", examples: int = 256) -> list[float]:
    """Examples/s of several run folders side by side on the first ``examples`` inputs of ``split`` of the first
    run's data (each run reading them its own way)."""
    from adapters_kit.data.splits import load_splits
    from adapters_kit.runs.checkpoint import load_run

    runs = [load_run(d) for d in run_dirs]
    kinds = {r.info.get("modality", "text") for r in runs}
    if len(kinds) > 1:
        raise UserError(f"runs of different modalities ({', '.join(sorted(kinds))}) cannot be timed on the same "
                        f"inputs; compare them without --measure")
    first = runs[0]
    data = first.cfg.data
    ds = load_splits(first.data_config(data), first.modality, labels=first.labels).split(split, data)
    inputs = ds.select(range(min(examples, len(ds))))
    return examples_per_second([(r.model, input_batches(inputs, r.modality, r.processor)) for r in runs])
