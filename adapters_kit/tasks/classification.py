"""Single-label classification: one label out of K per input; softmax cross-entropy; top-k labels with scores."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.evaluation.metrics import StreamingMetrics
from adapters_kit.tasks.base import TASKS
from adapters_kit.tasks.labels import LabelMap, normalize_label, sort_label_names

FREE_TEXT_MIN_VALUES = 20
"""A label column with more distinct values than this and than half the training rows (under two rows per class)
looks like free text or ids, as when --text-column and --label-column are swapped. Data with a handful of
classes never trips it, however few rows it has."""


def first_list(values: list) -> int | None:
    """The index of the first value that is a list or a record, if any."""
    return next((i for i, v in enumerate(values) if isinstance(v, (list, tuple, dict, np.ndarray))), None)


@TASKS.register("classification")
class Classification:
    name = "classification"
    best_metric = "f1_macro"
    selectable = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
                  "top_k_accuracy", "roc_auc", "log_loss", "ece")
    lower_is_better = ("log_loss", "ece")
    detect_order = 99  # the fallback: any column of single values
    outputs_word = "classes"
    pooling = None
    word_inputs = False
    closed_form = True
    problem_type = "single_label_classification"
    card_columns = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "log_loss", "ece")
    hub_metrics = (("accuracy", "accuracy", "Accuracy", None), ("f1_macro", "f1", "F1 (macro)", {"average": "macro"}))
    card_use = ("Intended for classifying {inputs} into the {n} labels above, on data like `{dataset}` ({sizes}). "
                "The figures above hold only for that distribution: inputs of another domain, language or\nlength, "
                "or belonging to none of the labels, are still forced into one of them, often with high confidence.")

    @classmethod
    def claims(cls, values: list, inputs: list | None = None) -> bool:
        return True

    def __init__(self, labels: LabelMap, cfg: TrainConfig):
        self.labels, self.cfg = labels, cfg
        self._lookup = {normalize_label(n): i for i, n in enumerate(labels.names)}  # labels.json of older runs too

    # Labels ---------------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, values: list, column: str, where: str, cfg: TrainConfig,
             inputs: list | None = None) -> list[str | None]:
        row = first_list(values)
        if row is not None:
            raise UserError(f"{where}: column {column!r} holds a list or record (row {row + 1}: "
                            f"{str(values[row])[:40]}); give one label per row, a string or a number (several "
                            f"labels per row: --task multi-label)")
        return [normalize_label(v) for v in values]

    @classmethod
    def fit(cls, values: list, order: Sequence[str] | None, column: str) -> LabelMap:
        """The classes of the training labels (a ClassLabel's ``order`` kept), checked: two or more, not free
        text."""
        if order is not None:
            names = tuple(dict.fromkeys(n for n in map(normalize_label, order) if n is not None))
        else:
            present = [v for v in values if v is not None]
            names = sort_label_names(present)
            if len(names) > FREE_TEXT_MIN_VALUES and len(names) > len(present) / 2:
                raise UserError(f"label column {column!r} has {len(names)} different values in {len(present)} "
                                f"training rows, so it looks like free text or ids, not classes; check "
                                f"--label-column and --text-column (numeric targets: --task regression)")
        if len(names) < 2:
            raise UserError(f"label column {column!r} has only one class ({', '.join(names) or 'none'}); "
                            f"classification needs at least two")
        return LabelMap(names)

    def target(self, value: str) -> int | None:
        return self._lookup.get(value)

    def unknown(self, value: str) -> list[str]:
        return [] if value in self._lookup else [value]

    def strata(self, targets: Sequence[int]) -> tuple[np.ndarray, list[str]]:
        return np.asarray(targets, dtype=np.int64), list(self.labels.names)

    # Model ----------------------------------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def init_head(self, head: torch.nn.Module) -> None:
        """The head as built (seeded) is where training starts."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def distill_loss(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """KL(teacher || student) of both distributions softened by the temperature T, times T^2 (Hinton et al.,
        2015: the soft loss's gradients keep their size whatever T), averaged over the batch."""
        t = temperature
        return F.kl_div(F.log_softmax(outputs / t, -1), F.log_softmax(teacher.to(outputs) / t, -1),
                        reduction="batchmean", log_target=True) * t * t

    def metrics(self, exported: bool = False) -> StreamingMetrics:
        return StreamingMetrics(self.labels.names, top_k=self.cfg.top_k)

    def decode(self, outputs: torch.Tensor, top_k: int = 1) -> list[Any]:
        """``[{"label", "score"}]`` per input (a list of ``top_k`` of them when ``top_k`` > 1), as a transformers
        classification pipeline answers."""
        labels = self.labels.names
        k = max(1, min(top_k, len(labels)))
        scores, ids = outputs.softmax(-1).topk(k, dim=-1)
        rows = [[{"label": labels[j], "score": float(s)} for s, j in zip(sr.tolist(), ir.tolist())]
                for sr, ir in zip(scores, ids)]
        return [r[0] for r in rows] if top_k == 1 else rows

    def exported(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

    def pipeline_tag(self, modality: str, pairs: bool = False) -> str:
        return f"{modality}-classification"
