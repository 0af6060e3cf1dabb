"""Frozen-backbone features for probes: encode each split once, keep the vectors in an on-disk Arrow cache.

With a frozen backbone in eval mode, ``head(features(x))`` equals ``model(x)`` exactly, so training and evaluating
on cached features is the same computation as running the whole model every epoch, at a fraction of the cost.

The cache key hashes the backbone's weights and pooling together with the preprocessed split's content (token
ids, masks, labels), so a different model, tokenizer, ``max_length`` or data gives a different key, and the same
ones are found again by the next run. The cache lives under ``$ADAPTERS_KIT_CACHE`` (default
``~/.cache/adapters_kit``) in ``features/<key>/``; delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import logging

import pyarrow as pa
import torch
from datasets import Dataset, load_from_disk
from torch.utils.data import DataLoader, TensorDataset

from adapters_kit.builtin.catalog import cache_root
from adapters_kit.model.modeling import AdapterClassifier
from adapters_kit.runs.atomic import atomic_dir

log = logging.getLogger(__name__)


def backbone_fingerprint(model: AdapterClassifier) -> str:
    """sha256 of every backbone tensor's bytes and the pooling (about 0.1 s for 22M parameters)."""
    h = hashlib.sha256(model.pooling.encode())
    for name, tensor in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def split_fingerprint(ds: Dataset) -> str:
    """sha256 of a preprocessed split's Arrow data (column names, types and values)."""
    table = ds.flatten_indices().data.table if ds._indices is not None else ds.data.table
    # The same data may sit in differently sized record batches (fresh vs. cached map output) and carry
    # datasets' metadata: hash one canonical layout of the values only.
    table = table.replace_schema_metadata(None).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


@torch.inference_mode()
def encode(model: AdapterClassifier, loader: DataLoader, device: torch.device) -> TensorDataset:
    """Pooled features and labels for every batch of ``loader`` (order kept)."""
    model.eval()
    feats, labels = [], []
    for batch in loader:
        labels.append(batch.pop("labels"))
        feats.append(model.features(**{k: v.to(device) for k, v in batch.items()}).float().cpu())
    return TensorDataset(torch.cat(feats), torch.cat(labels))


def cached_encode(model: AdapterClassifier, ds: Dataset, loader: DataLoader, device: torch.device,
                  backbone_key: str) -> tuple[TensorDataset, bool]:
    """(features of ``ds``, whether they came from the cache). ``loader`` iterates ``ds`` in order."""
    key = hashlib.sha256((backbone_key + split_fingerprint(ds)).encode()).hexdigest()[:32]
    path = cache_root() / "features" / key
    if (path / "dataset_info.json").exists():
        try:
            cached = load_from_disk(str(path)).with_format("torch")[:]  # one dict of whole-column tensors
            return TensorDataset(cached["features"], cached["label"]), True
        except (OSError, ValueError, KeyError) as e:  # a damaged entry is rebuilt, not trusted
            log.warning("feature cache entry %s unreadable (%s); encoding again", path, e)
    features = encode(model, loader, device)
    with atomic_dir(path) as tmp:
        Dataset.from_dict({"features": features.tensors[0].numpy(), "label": features.tensors[1].numpy()}) \
            .save_to_disk(str(tmp))
    return features, False


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    x, y = zip(*items)
    return {"features": torch.stack(x), "labels": torch.stack(y)}


def feature_loader(ds: TensorDataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches of ``{"features", "labels"}``: the same keys ``AdapterClassifier.forward`` and the loop use."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=_collate, generator=generator)
