"""The task interface and its registry. A task says what a label is (how a label cell is read, the label space the
training split defines, the training target of one label), the head's output size, the loss, the streaming
metrics, how outputs are decoded into predictions, and how the Hub names the task; the modality (inputs) and the
method (which parameters train) are chosen independently of it.

A registered task class reads and fits labels as a class (``read``, ``fit``: there is no label space yet); an
instance is bound to a run's :class:`~adapters_kit.tasks.labels.LabelMap` and config (:func:`get_task`).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import torch

from adapters_kit.config import TrainConfig
from adapters_kit.registry import Registry
from adapters_kit.tasks.labels import LabelMap


class Metrics(Protocol):
    """Streaming metrics of one split: batches of model outputs and targets in, ``metrics.json``'s entry out."""

    def update(self, outputs: np.ndarray, targets: np.ndarray) -> None: ...

    def compute(self) -> dict[str, Any]: ...


class Task(Protocol):
    name: str
    labels: LabelMap
    best_metric: str
    """The validation metric that selects the saved weights when ``best_metric`` is not given."""
    selectable: tuple[str, ...]
    """Metrics ``best_metric`` may name for this task."""
    lower_is_better: tuple[str, ...]
    outputs_word: str
    """What the head's outputs are called in messages (``classes``, ``labels``)."""
    closed_form: bool
    """Whether ``--probe-solver lbfgs`` (a logistic regression on cached features) fits this task."""
    card_columns: tuple[str, ...]
    """The metrics the model card's results table shows (after ``n``); the first is in every scored split."""
    hub_metrics: tuple[tuple[str, str, str, dict | None], ...]
    """(metric key, Hub metric type, display name, args) of the card's ``model-index`` results."""
    card_use: str
    """The card's intended-use sentence (``{inputs}``, ``{n}``, ``{target}``, ``{dataset}``, ``{sizes}``)."""
    problem_type: str
    """transformers' ``config.problem_type`` of an exported model (which loss and which pipeline activation)."""

    def exported(self, outputs: torch.Tensor) -> torch.Tensor:
        """Head outputs -> what an exported model outputs (the run's head outputs, or for regression the value on
        the target's scale, which export folds into the last linear layer)."""

    detect_order: int
    """Detection asks the tasks in this order whether they claim a label column (the first that does wins)."""

    word_inputs: bool
    """Inputs are lists of words (each gets its own prediction), not one text, path or pair each."""
    pooling: str | None
    """The pooling the head needs (token classification: none, each token state is scored), or None: the
    modality's or ``--pooling``."""

    @classmethod
    def claims(cls, values: list, inputs: list | None = None) -> bool:
        """Whether the training split's raw label cells (beside its inputs) look like this task's labels (task
        detection)."""

    @classmethod
    def read(cls, values: list, column: str, where: str, cfg: TrainConfig, inputs: list | None = None) -> list:
        """A split's raw label cells (a ClassLabel's ids already decoded to names) -> the task's label values
        (``None``: missing), given the split's inputs; a UserError names the first cell that cannot be a label of
        this task."""

    @classmethod
    def fit(cls, values: list, order: Sequence[str] | None, column: str) -> LabelMap:
        """The label space of the training split's label values (``order``: the names a ClassLabel declares)."""

    def target(self, value: Any) -> Any:
        """One label value -> the training target stored in the data set; ``None`` when the run's label space
        lacks it (a class the training split never had)."""

    def unknown(self, value: Any) -> list[str]:
        """The names in ``value`` that the label space lacks (for the message about dropped rows)."""

    def strata(self, targets: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
        """(one integer group per example for stratified splitting, each group's name for messages)."""

    @property
    def num_outputs(self) -> int:
        """The head's output size."""

    def init_head(self, head: torch.nn.Module) -> None:
        """Set a freshly built head's starting point where the task has a better one than the seeded default."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch."""

    def distill_loss(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """The loss of a student's outputs towards a teacher's on the same batch (knowledge distillation). Tasks
        that score every token define none (their students are refused)."""

    def metrics(self, exported: bool = False) -> Metrics:
        """A fresh streaming-metrics accumulator for one split, fed head outputs (``exported``: outputs of an
        exported model, :meth:`exported`)."""

    def decode(self, outputs: torch.Tensor, top_k: int = 1) -> list[Any]:
        """Model outputs -> what ``load(run)(inputs)`` answers, one entry per input."""

    def pipeline_tag(self, modality: str, pairs: bool = False) -> str:
        """The Hub's pipeline tag for this task on ``modality``'s inputs (``pairs``: two texts per input)."""


TASKS: Registry[type] = Registry("task")
DEFAULT_TASK = "classification"
"""The task of run folders written before tasks were recorded."""


def get_task(name: str, labels: LabelMap, cfg: TrainConfig | None = None) -> Task:
    """The registered task ``name`` bound to a run's label space and settings; unknown names raise with the list
    of valid ones."""
    return TASKS.get(name)(labels, cfg or TrainConfig())


def task_class(name: str) -> type:
    """The registered class of task ``name`` (reads and fits labels before a label space exists)."""
    return TASKS.get(name)


def detect_task(values: list, inputs: list | None = None) -> str:
    """The first registered task (in ``detect_order``) that claims these raw training label cells."""
    ranked = sorted(TASKS.names(), key=lambda n: TASKS.get(n).detect_order)
    return next(n for n in ranked if TASKS.get(n).claims(values, inputs))
