"""The task interface and its registry. A task says how many outputs the head has, the training loss, how outputs
are decoded into predictions, and how the Hub names the task; the modality (inputs) and the method (which parameters
train) are chosen independently of it."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch

from adapters_kit.registry import Registry


class Task(Protocol):
    name: str

    def num_outputs(self, labels: Sequence[str]) -> int:
        """The head's output size for the run's label set."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch."""

    def decode(self, outputs: torch.Tensor, labels: Sequence[str], top_k: int = 1) -> list[Any]:
        """Model outputs -> what ``load(run)(inputs)`` answers, one entry per input."""

    def pipeline_tag(self, modality: str) -> str:
        """The Hub's pipeline tag for this task on ``modality``'s inputs."""


TASKS: Registry[type] = Registry("task")
DEFAULT_TASK = "classification"
"""The task of every run today (and of run folders written before tasks were recorded)."""


def get_task(name: str = DEFAULT_TASK) -> Task:
    """The registered task ``name``; unknown names raise with the list of valid ones."""
    return TASKS.get(name)()
