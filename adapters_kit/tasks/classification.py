"""Single-label classification: one label out of K per input; softmax cross-entropy; top-k labels with scores."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from adapters_kit.tasks.base import TASKS


@TASKS.register("classification")
class Classification:
    name = "classification"

    def num_outputs(self, labels: Sequence[str]) -> int:
        return len(labels)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def decode(self, outputs: torch.Tensor, labels: Sequence[str], top_k: int = 1) -> list[Any]:
        """``[{"label", "score"}]`` per input (a list of ``top_k`` of them when ``top_k`` > 1), as a transformers
        classification pipeline answers."""
        k = max(1, min(top_k, len(labels)))
        scores, ids = outputs.softmax(-1).topk(k, dim=-1)
        rows = [[{"label": labels[j], "score": float(s)} for s, j in zip(sr.tolist(), ir.tolist())]
                for sr, ir in zip(scores, ids)]
        return [r[0] for r in rows] if top_k == 1 else rows

    def pipeline_tag(self, modality: str) -> str:
        return f"{modality}-classification"
