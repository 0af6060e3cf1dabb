"""What the loop minimises: the :class:`Objective` interface, the task's own loss, and the endless auxiliary batch
stream that the methods' extra objectives (:mod:`adapters_kit.methods.domain`) draw from.

An objective draws its auxiliary batches from a :class:`BatchStream` over its own (prepared) loader; the stream's
position is saved in checkpoints, so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import torch
from torch import nn

from adapters_kit.tasks import Task


class Objective(Protocol):
    stream: "BatchStream | None"
    """Where the auxiliary batches come from (None: no auxiliary batches)."""

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        """Extra heads the model must carry (trained with it, dropped when the run is saved)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], labels: torch.Tensor,
             progress: float) -> torch.Tensor:
        """The step's loss; ``progress`` runs from 0 to 1 over training."""


class BatchStream:
    """Endless batches from a loader, pass e shuffled with ``seed + e`` (through the loader's own generator);
    ``drawn`` counts the batches handed out, and :meth:`restore` continues from such a count."""

    def __init__(self, loader, generator: torch.Generator | None = None, seed: int = 0):
        self.loader, self.generator, self.seed = loader, generator, seed
        self.drawn = 0
        self._it: Iterator[dict[str, Any]] | None = None

    def restore(self, drawn: int) -> None:
        self.drawn, self._it = drawn, None

    def _start(self) -> None:
        passes, skip = divmod(self.drawn, len(self.loader))
        if self.generator is not None:
            self.generator.manual_seed(self.seed + passes)
        self._it = iter(self.loader)
        for _ in range(skip):  # the batches drawn before a checkpoint: loaded again, not used
            next(self._it)

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:  # a pass is over: the next one, reshuffled
            self._start()
            batch = next(self._it)
        self.drawn += 1
        return batch

    def __iter__(self) -> "BatchStream":
        return self


class TaskLoss:
    """The default objective: the task's loss on the labelled batch (classification: cross-entropy)."""

    stream: BatchStream | None = None

    def __init__(self, task: Task):
        self.task = task

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {}

    def loss(self, model, batch, labels, progress):
        return self.task.loss(model(**batch), labels)
