"""Frozen-backbone features for probes: encode each split once, then train the head on the vectors.

With a frozen backbone in eval mode, ``head(features(x))`` equals ``model(x)`` exactly, so training and evaluating
on cached features is the same computation as running the whole model every epoch, at a fraction of the cost.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from adapters_kit.modeling import AdapterClassifier


@torch.inference_mode()
def encode(model: AdapterClassifier, loader: DataLoader, device: torch.device) -> TensorDataset:
    """Pooled features and labels for every batch of ``loader`` (order kept)."""
    model.eval()
    feats, labels = [], []
    for batch in loader:
        labels.append(batch.pop("labels"))
        feats.append(model.features(**{k: v.to(device) for k, v in batch.items()}).float().cpu())
    return TensorDataset(torch.cat(feats), torch.cat(labels))


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    x, y = zip(*items)
    return {"features": torch.stack(x), "labels": torch.stack(y)}


def feature_loader(ds: TensorDataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches of ``{"features", "labels"}``: the same keys ``AdapterClassifier.forward`` and the loop use."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=_collate, generator=generator)
