"""Multi-label classification: any number of K labels per input (none included); one sigmoid per label with
binary cross-entropy; a label is predicted when its score reaches its decision threshold (0.5, or per label tuned
on the validation split with ``--thresholds tuned``, kept in ``labels.json``)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.evaluation.multilabel import MultiLabelMetrics, pos_weight, tune_thresholds
from adapters_kit.tasks.base import TASKS
from adapters_kit.tasks.labels import LabelMap, normalize_label, sort_label_names

STRATIFY_MIN_ROWS = 2
"""Rows a label combination needs to be a stratum of its own when a split is carved."""


def _split(value: Any, separator: str | None, where: str, column: str, row: int) -> tuple[str, ...] | None:
    """One cell -> its label names (empty tuple: no label); ``None`` for a missing cell (JSON null, NaN)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    elif isinstance(value, str) and separator is not None:
        items = value.split(separator)
    elif isinstance(value, str):
        raise UserError(f"{where}: column {column!r} holds text, not lists (row {row + 1}: {value[:40]!r}); "
                        f"multi-label needs a list per row (JSON, JSON lines, Parquet) or --label-separator to "
                        f"split the text (e.g. --label-separator ';')")
    elif value is None or normalize_label(value) is None:
        return () if separator is not None else None  # an empty CSV cell with a separator: no label
    else:
        items = [value]
    try:
        names = [normalize_label(v) for v in items]
    except TypeError:
        raise UserError(f"{where}: column {column!r} row {row + 1} holds a nested list or record "
                        f"({str(value)[:40]}); give a flat list of label names") from None
    return tuple(dict.fromkeys(n for n in names if n is not None))


@TASKS.register("multi-label")
class MultiLabel:
    name = "multi-label"
    best_metric = "f1_micro"
    selectable = ("f1_micro", "f1_macro", "f1_weighted", "f1_samples", "precision_micro", "recall_micro",
                  "subset_accuracy", "hamming_loss", "map", "roc_auc")
    lower_is_better = ("hamming_loss",)
    detect_order = 0
    outputs_word = "labels"
    pooling = None
    word_inputs = False
    closed_form = False
    problem_type = "multi_label_classification"
    card_columns = ("f1_micro", "f1_macro", "f1_samples", "precision_micro", "recall_micro", "subset_accuracy",
                    "hamming_loss", "map", "roc_auc")
    hub_metrics = (("f1_micro", "f1", "F1 (micro)", {"average": "micro"}),
                   ("f1_macro", "f1", "F1 (macro)", {"average": "macro"}), ("map", "map", "mAP", None))
    card_use = ("Intended for tagging {inputs} with any of the {n} labels above, on data like `{dataset}` ({sizes}). "
                "The figures above hold only for that distribution: inputs of another domain, language or length "
                "still get labels, often with high confidence.")

    @classmethod
    def claims(cls, values: list, inputs: list | None = None) -> bool:
        """A column of lists (JSON, Parquet, a ``Sequence`` feature); text to split needs ``--task`` named."""
        return any(isinstance(v, (list, tuple, np.ndarray)) for v in values)

    def __init__(self, labels: LabelMap, cfg: TrainConfig):
        self.labels, self.cfg = labels, cfg
        self._lookup = {n: i for i, n in enumerate(labels.names)}
        self.thresholds = list(labels.params.get("thresholds") or [0.5] * len(labels))
        weight = labels.params.get("pos_weight") if cfg.pos_weight else None
        self.pos_weight = torch.tensor(weight, dtype=torch.float32) if weight else None

    @classmethod
    def read(cls, values: list, column: str, where: str, cfg: TrainConfig,
             inputs: list | None = None) -> list[tuple[str, ...] | None]:
        return [_split(v, cfg.label_separator, where, column, i) for i, v in enumerate(values)]

    @classmethod
    def fit(cls, values: list, order: Sequence[str] | None, column: str) -> LabelMap:
        present = [v for v in values if v is not None]
        names = tuple(order) if order is not None else sort_label_names(n for v in present for n in v)
        if not names:
            raise UserError(f"label column {column!r} holds no label in the training split; multi-label needs "
                            f"at least one")
        lookup = {n: i for i, n in enumerate(names)}
        hot = np.zeros((len(present), len(names)))
        for r, v in enumerate(present):
            hot[r, [lookup[n] for n in v]] = 1.0
        return LabelMap(names, {"pos_weight": pos_weight(hot).tolist(), "prior": hot.mean(0).tolist()})

    def target(self, value: tuple[str, ...]) -> list[float] | None:
        if any(n not in self._lookup for n in value):
            return None
        hot = [0.0] * len(self.labels)
        for n in value:
            hot[self._lookup[n]] = 1.0
        return hot

    def unknown(self, value: tuple[str, ...]) -> list[str]:
        return [n for n in value if n not in self._lookup]

    def strata(self, targets: Sequence[Sequence[float]]) -> tuple[np.ndarray, list[str]]:
        """Label combinations; the rows of a combination too rare to split join the stratum of their rarest
        label (by frequency in these rows), and those of an empty or still-rare group one last stratum."""
        hot = np.asarray(targets, dtype=np.int8).reshape(len(targets), len(self.labels))
        combos = [tuple(np.flatnonzero(r)) for r in hot]
        counts, freq = Counter(combos), hot.sum(0)
        keys = [c if counts[c] >= STRATIFY_MIN_ROWS else (min(c, key=lambda j: (freq[j], j)),) if c else ()
                for c in combos]
        kept = Counter(keys)
        keys = [k if kept[k] >= STRATIFY_MIN_ROWS else ("rare",) for k in keys]
        order = sorted(set(keys), key=str)
        names = ["+".join(self.labels.names[j] for j in k) if k != ("rare",) else "rare combinations"
                 for k in order]
        index = {k: i for i, k in enumerate(order)}
        return np.asarray([index[k] for k in keys], dtype=np.int64), [n or "no label" for n in names]

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.pos_weight.to(outputs) if self.pos_weight is not None else None
        return F.binary_cross_entropy_with_logits(outputs, targets.to(outputs.dtype), pos_weight=weight)

    def distill_loss(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """Each label's Bernoulli KL(teacher || student) with both scores softened by the temperature T, times
        T^2, averaged over labels and examples (0 when the two agree)."""
        t = temperature
        soft = torch.sigmoid(teacher.to(outputs) / t)
        gap = F.binary_cross_entropy_with_logits(outputs / t, soft) - F.binary_cross_entropy_with_logits(
            teacher.to(outputs) / t, soft)
        return gap * t * t

    def init_head(self, head: torch.nn.Module) -> None:
        """Start each label's bias at the log-odds of its frequency on the training split (a rare label starts
        rare), so the first steps go to telling labels apart rather than pushing every score down from 0.5."""
        prior = self.labels.params.get("prior")
        if prior is not None:
            p = torch.tensor(prior, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
            with torch.no_grad():
                head[-1].bias.copy_(torch.log(p / (1 - p)))

    def metrics(self, exported: bool = False) -> MultiLabelMetrics:
        return MultiLabelMetrics(self.labels.names, self.thresholds)

    def tuned(self, outputs: np.ndarray, targets: np.ndarray) -> LabelMap:
        """The label space with per-label thresholds that maximise each label's F1 on these (validation)
        outputs."""
        scores = 1.0 / (1.0 + np.exp(-np.asarray(outputs, dtype=np.float64)))
        return self.labels.with_params(thresholds=[float(t) for t in tune_thresholds(scores, np.asarray(targets))])

    def decode(self, outputs: torch.Tensor, top_k: int = 1) -> list[Any]:
        """Per input, the labels whose score reaches their threshold, ``[{"label", "score"}]`` by score (none when
        no label does); with ``top_k`` > 1, the ``top_k`` best-scoring labels whatever their thresholds."""
        scores = outputs.float().sigmoid()
        out = []
        for row in scores.tolist():
            ranked = sorted(range(len(row)), key=lambda j: -row[j])
            keep = ranked[:top_k] if top_k > 1 else [j for j in ranked if row[j] >= self.thresholds[j]]
            out.append([{"label": self.labels.names[j], "score": row[j]} for j in keep])
        return out

    def exported(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

    def pipeline_tag(self, modality: str, pairs: bool = False) -> str:
        return f"{modality}-classification"


