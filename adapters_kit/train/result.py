"""What a training stage did: the record the loop fills and the run folder keeps (a plain dataclass)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainResult:
    """What training did: evaluations, the best one (whose weights the model ends with), step log, timing."""

    best_step: int = 0
    best_epoch: int = 0
    best_score: float | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    """Full validation metrics of the best evaluation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One row per evaluation and split: epoch, global_step, split and the scalar metrics."""
    log: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_samples: int = 0
    train_tokens: int | None = None
    """Real (unpadded) tokens trained on, over every process; None for inputs that are not token ids."""
    epoch_losses: list[float] = field(default_factory=list)
    """Mean training loss of each epoch (over every process)."""
    on_features: bool = False
    """True when training read cached features: the final metrics then come from the whole model on raw inputs."""

    def record(self, epoch: int, step: int, split: str, metrics: dict[str, Any]) -> dict[str, Any]:
        """Add an evaluation to ``history``; returns its scalar metrics (what the row holds)."""
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
        self.history.append({"epoch": epoch, "global_step": step, "split": split, **scalars})
        return scalars
