"""Inference speed of several models side by side on the same inputs (each read by its own processor)."""

from __future__ import annotations

import time
from typing import Any

import torch

from adapters_kit.data.splits import make_loader, prepare
from adapters_kit.errors import UserError

BATCH_SIZE = 32


def input_batches(inputs: Any, modality: Any, processor: Any, batch_size: int = BATCH_SIZE) -> list[dict]:
    """The batches a model of ``modality`` reads for the ``input`` column of ``inputs``, in row order."""
    prepared = prepare(inputs.select_columns(["input"]), modality, processor)
    return list(make_loader(prepared, modality.collator(processor), batch_size, shuffle=False))


@torch.inference_mode()
def examples_per_second(models: list[tuple[torch.nn.Module, list[dict]]]) -> list[float]:
    """Each model's examples/s over its batches (the same inputs for every model). After one warm-up batch each,
    the models take turns batch by batch, so a machine whose load changes slows them all alike."""
    for model, batches in models:
        model.eval()(**batches[0])
    seconds = [0.0] * len(models)
    for i in range(len(models[0][1])):
        for j, (model, batches) in enumerate(models):
            start = time.perf_counter()
            model(**batches[i])
            seconds[j] += time.perf_counter() - start
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
