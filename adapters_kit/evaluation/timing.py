"""Several models timed side by side: after a warm-up batch each, they take turns batch by batch, so a machine whose
load changes (shared cores) slows them all alike."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch


@torch.inference_mode()
def in_turns(calls: list[Callable[[Any], Any]], batches: list[list[Any]]) -> tuple[list[float], list[list[Any]]]:
    """(seconds each call spent, each call's outputs batch by batch): call ``j`` reads ``batches[j]`` (the same
    inputs for every call, each in its own form), one batch at a time in turn with the others."""
    for call, own in zip(calls, batches):
        call(own[0])  # warm-up
    seconds, outputs = [0.0] * len(calls), [[] for _ in calls]
    for i in range(len(batches[0])):
        for j, call in enumerate(calls):
            start = time.perf_counter()
            outputs[j].append(call(batches[j][i]))
            seconds[j] += time.perf_counter() - start
    return seconds, outputs
