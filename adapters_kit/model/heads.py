"""Pooling (token/frame states -> one vector) and classification heads, each registered by name."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from adapters_kit.registry import Registry

Pooler = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
POOLERS: Registry[Pooler] = Registry("pooling")
HEADS: Registry[Callable[..., nn.Module]] = Registry("head")


@POOLERS.register("mean")
def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Average over real (unmasked) positions: what sentence-transformers encoders are trained for."""
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


@POOLERS.register("pooler")
def pooler_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The backbone's own pooled output (``pooler_output``: a CNN's global average pool, ConvNeXt's pooled layer
    norm); ``AdapterClassifier`` uses it directly and falls back to this mean when a backbone has none."""
    return mean_pool(hidden, mask)


@POOLERS.register("cls")
def cls_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The first position (BERT's [CLS], ViT's class token)."""
    return hidden[:, 0]


@POOLERS.register("last")
def last_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The last real position, for decoder LMs (works with left or right padding)."""
    if mask is None:
        return hidden[:, -1]
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * mask.long()).argmax(1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


@POOLERS.register("tokens")
def token_states(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """No pooling: every token's state goes to the head (token classification scores each token)."""
    return hidden


@HEADS.register("linear")
def linear_head(in_features: int, num_labels: int, dropout: float = 0.1) -> nn.Module:
    """Dropout + one linear layer: the classic probe."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_labels))


@HEADS.register("mlp")
def mlp_head(in_features: int, num_labels: int, dropout: float = 0.1) -> nn.Module:
    """One hidden layer (same width as the features) with GELU."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, in_features), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(in_features, num_labels))


def build_head(name: str, in_features: int, num_labels: int, dropout: float = 0.1) -> nn.Module:
    return HEADS.get(name)(in_features, num_labels, dropout)
