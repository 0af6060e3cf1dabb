"""Deterministic inputs for the evaluation tests: model outputs that are the features themselves, with targets
of each task's shape."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from adapters_kit import TrainConfig
from adapters_kit.tasks import LabelMap, get_task

N, K, BATCH = 37, 4, 4
TASK_NAMES = ("classification", "multi-label", "regression", "token-classification")


def identity_model() -> torch.nn.Module:
    class Identity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Linear(1, 1)  # DDP needs a parameter

        def forward(self, features):
            return features

    return Identity()


def fixture_task(name: str = "classification"):
    """The task ``name`` over the fixture's outputs: 4 classes / labels, or one regression target."""
    if name == "regression":
        return get_task(name, LabelMap(("score",), {"mean": [0.5], "std": [2.0]}))
    if name == "token-classification":
        return get_task(name, LabelMap(("B-LOC", "B-PER", "I-PER", "O")))
    return get_task(name, LabelMap(("a", "b", "c", "d")), TrainConfig(top_k=2))


def fixed_loader(task: str = "classification") -> DataLoader:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, K, (N,), generator=g)
    logits = torch.randn(N, K, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, K)
    if task == "multi-label":
        labels = (torch.rand(N, K, generator=g) < 0.4).float()
        logits = torch.randn(N, K, generator=g) + 2.0 * labels - 1.0
    elif task == "regression":
        labels = torch.randn(N, generator=g) * 2.0 + 0.5
        logits = ((labels - 0.5) / 2.0 + 0.3 * torch.randn(N, generator=g))[:, None]
    elif task == "token-classification":  # 9 token positions: some ignored (-100), some words cut off (-1000 - tag)
        tags = torch.randint(0, K, (N, 9), generator=g)
        logits = torch.randn(N, 9, K, generator=g) + 2.0 * torch.nn.functional.one_hot(tags, K)
        ignored = torch.rand(N, 9, generator=g) < 0.2
        labels = tags.where(~ignored, torch.full_like(tags, -100))
        labels[:, 0], labels[::3, -1] = -100, -1000 - tags[::3, -1]
    ds = TensorDataset(logits, labels)
    return DataLoader(ds, batch_size=BATCH, collate_fn=lambda items: {
        "features": torch.stack([x for x, _ in items]), "labels": torch.stack([y for _, y in items])})
