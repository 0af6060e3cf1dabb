"""Batches: training loaders (seeded shuffle, optionally length-grouped) and evaluation loaders (longest first)."""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader

GROUP_SIZE = 1024
"""Examples per length group: a shuffled group is ordered by length, so neighbouring batches hold similar lengths."""


class LengthGroupedSampler(torch.utils.data.Sampler):
    """A random permutation (the same one ``RandomSampler`` draws from this generator), cut into groups of
    ``GROUP_SIZE`` examples, each ordered by length, longest first (a stable sort: equal lengths keep their random
    order). Batches cut from it hold similar lengths, so dynamic padding wastes little, while every epoch still
    mixes the data. The group size counts examples, not batches, so one process at batch 8 and two at batch 4 see
    the same global batches."""

    def __init__(self, lengths: list[int], generator: torch.Generator):
        self.lengths, self.generator = lengths, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        for start in range(0, len(order), GROUP_SIZE):
            yield from sorted(order[start:start + GROUP_SIZE], key=lambda i: -self.lengths[i])


class LongestFirstSampler(torch.utils.data.Sampler):
    """Every index once, longest first (a stable sort: equal lengths keep the split's order), for evaluation:
    batches of similar lengths waste little on padding, and metrics do not depend on the order (per-example outputs
    such as the mistakes list carry their dataset index)."""

    def __init__(self, lengths: list[int]):
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)


def make_loader(ds: Dataset, collator: Any, batch_size: int, shuffle: bool, seed: int = 0,
                group_by_length: bool = False) -> DataLoader:
    """Training loaders shuffle with a seeded generator; evaluation loaders do not. With ``group_by_length`` and
    token ids, training batches come from :class:`LengthGroupedSampler` and evaluation batches longest first
    (:class:`LongestFirstSampler`); without, evaluation keeps the split's order."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    if group_by_length and "input_ids" in ds.column_names:
        lengths = [len(ids) for ids in ds["input_ids"]]
        sampler = LengthGroupedSampler(lengths, generator) if shuffle else LongestFirstSampler(lengths)
        loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collator)
        loader.generator = generator  # where the training loop reseeds each epoch's shuffle (None: evaluation)
        return loader
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collator,
                      generator=generator)
