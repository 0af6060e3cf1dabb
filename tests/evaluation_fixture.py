"""Deterministic inputs for the evaluation tests: logits that are the features themselves."""

import torch
from torch.utils.data import DataLoader, TensorDataset

N, K, BATCH = 37, 4, 4


def identity_model() -> torch.nn.Module:
    class Identity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Linear(1, 1)  # DDP needs a parameter

        def forward(self, features):
            return features

    return Identity()


def fixed_loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, K, (N,), generator=g)
    logits = torch.randn(N, K, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, K)
    ds = TensorDataset(logits, labels)
    return DataLoader(ds, batch_size=BATCH, collate_fn=lambda items: {
        "features": torch.stack([x for x, _ in items]), "labels": torch.stack([y for _, y in items])})
