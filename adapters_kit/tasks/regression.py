"""Regression: a number per input. Targets are standardised with the training split's mean and standard deviation
(kept in ``labels.json``), the head predicts the standardised value, and predictions are scaled back, so the
loss is well conditioned whatever the target's unit; metrics are taken on the original scale."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.evaluation.regression import RegressionMetrics
from adapters_kit.tasks.base import TASKS
from adapters_kit.tasks.classification import FREE_TEXT_MIN_VALUES, first_list
from adapters_kit.tasks.labels import LabelMap

STRATA = 5
"""Carved splits are stratified by the target's quintile on the training split."""
PLOT_BINS = 40
"""Cells per axis of the predicted-vs-true grid and bins of the residual histogram kept in ``metrics.json``."""


def as_number(value: Any) -> float | None:
    """A target cell as a float; ``None`` for a missing one (empty, NaN); ValueError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError
    number = float(value)  # raises ValueError for text that is not a number
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError
    return number


class _Scaled(torch.nn.Module):
    """Standardised head outputs -> the target's own scale."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs * self.std.to(outputs) + self.mean.to(outputs)


@TASKS.register("regression")
class Regression:
    name = "regression"
    best_metric = "rmse"
    selectable = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
    lower_is_better = ("mse", "rmse", "mae")
    detect_order = 1
    outputs_word = "target(s)"
    pooling = None
    word_inputs = False
    closed_form = False
    problem_type = "regression"
    card_columns = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
    hub_metrics = (("rmse", "rmse", "RMSE", None), ("pearson", "pearsonr", "Pearson r", None),
                   ("spearman", "spearmanr", "Spearman rho", None))
    card_use = ("Intended for scoring {inputs} on the scale of `{target}` seen in training, on data like `{dataset}` "
                "({sizes}). The figures above hold only for that distribution: inputs of another domain, language "
                "or length still get a score, which may be far off.")

    @classmethod
    def claims(cls, values: list, inputs: list | None = None) -> bool:
        """Numbers that are not all integers, with more distinct values than classes could have (integer codes
        and a few distinct scores stay classes; ``--task regression`` says otherwise)."""
        try:
            numbers = [x for x in (as_number(v) for v in values) if x is not None]
        except (TypeError, ValueError):
            return False
        distinct = set(numbers)
        return any(not x.is_integer() for x in distinct) and len(distinct) > FREE_TEXT_MIN_VALUES

    def __init__(self, labels: LabelMap, cfg: TrainConfig):
        self.labels, self.cfg = labels, cfg
        self.mean = list(labels.params.get("mean", [0.0] * len(labels)))
        self.std = list(labels.params.get("std", [1.0] * len(labels)))
        self.scale = _Scaled(self.mean, self.std)

    @classmethod
    def read(cls, values: list, column: str, where: str, cfg: TrainConfig,
             inputs: list | None = None) -> list[float | None]:
        row = first_list(values)
        if row is not None:
            raise UserError(f"{where}: column {column!r} holds a list (row {row + 1}: {str(values[row])[:40]}); "
                            f"regression takes one number per row")
        out = []
        for i, v in enumerate(values):
            try:
                out.append(as_number(v))
            except (TypeError, ValueError):
                raise UserError(f"{where}: column {column!r} is not numeric (row {i + 1}: {str(v)[:40]!r}); "
                                f"regression needs a number in every labelled row") from None
        return out

    @classmethod
    def fit(cls, values: list, order: Sequence[str] | None, column: str) -> LabelMap:
        present = np.asarray([v for v in values if v is not None], dtype=np.float64)
        if len(present) < 2 or float(present.std()) == 0.0:
            raise UserError(f"target column {column!r} has {len(np.unique(present))} distinct value(s) in the "
                            f"training split; regression needs targets that vary")
        return LabelMap((column,), {"mean": [float(present.mean())], "std": [float(present.std())]})

    def target(self, value: float) -> float:
        return float(value)

    def unknown(self, value: float) -> list[str]:
        return []

    def strata(self, targets: Sequence[float]) -> tuple[np.ndarray, list[str]]:
        y = np.asarray(targets, dtype=np.float64)
        edges = np.unique(np.quantile(y, np.linspace(0, 1, STRATA + 1)[1:-1])) if len(y) else np.array([])
        groups = np.searchsorted(edges, y, side="right")
        bounds = [-math.inf, *edges.tolist(), math.inf]
        return groups, [f"{self.labels.names[0]} in [{lo:.3g}, {hi:.3g})" for lo, hi in zip(bounds, bounds[1:])]

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def init_head(self, head: torch.nn.Module) -> None:
        """The head as built (seeded) is where training starts."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z = (targets.to(outputs.dtype).reshape(outputs.shape) - self.scale.mean.to(outputs)) / self.scale.std.to(
            outputs)
        return F.huber_loss(outputs, z) if self.cfg.loss == "huber" else F.mse_loss(outputs, z)

    def distill_loss(self, outputs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """Mean squared distance to the teacher's outputs on the standardised scale both share (a number has no
        distribution to soften: the temperature does not apply)."""
        return F.mse_loss(outputs, teacher.to(outputs).reshape(outputs.shape))

    def metrics(self, exported: bool = False) -> "_OnScale":
        return _OnScale(RegressionMetrics(self.labels.names), torch.nn.Identity() if exported else self.scale)

    def decode(self, outputs: torch.Tensor, top_k: int = 1) -> list[Any]:
        """``{"score": value}`` per input on the target's own scale (``{name: value}`` for several targets)."""
        values = self.scale(outputs.float()).tolist()
        if len(self.labels) == 1:
            return [{"score": row[0]} for row in values]
        return [dict(zip(self.labels.names, row)) for row in values]

    def exported(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.scale(outputs)

    def pipeline_tag(self, modality: str, pairs: bool = False) -> str:
        return "sentence-similarity" if pairs else f"{modality}-classification"


class _OnScale:
    """Regression metrics of head outputs scaled back to the target's unit."""

    def __init__(self, metrics: RegressionMetrics, scale: torch.nn.Module):
        self.inner, self.scale = metrics, scale

    def update(self, outputs: np.ndarray, targets: np.ndarray) -> None:
        predictions = self.scale(torch.from_numpy(np.asarray(outputs, dtype=np.float32))).numpy()
        self.inner.update(predictions.reshape(len(predictions), -1).astype(np.float64),
                          np.asarray(targets, dtype=np.float64).reshape(len(predictions), -1))

    def compute(self) -> dict[str, Any]:
        """The metrics, and (first target) the histograms the report draws: predicted against true values on a
        grid, and the residuals; bounded in size and, like the metrics, independent of batch order."""
        out = self.inner.compute()
        if out["n"]:
            true, pred = self.inner.targets()[:, 0], self.inner.predictions()[:, 0]
            lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
            grid, _, _ = np.histogram2d(true, pred, bins=PLOT_BINS, range=[[lo, hi], [lo, hi]])
            counts, edges = np.histogram(true - pred, bins=PLOT_BINS)
            out["plot"] = {"range": [lo, hi], "grid": grid.astype(int).tolist(),
                           "residual_counts": counts.tolist(), "residual_edges": edges.tolist()}
        return out
