"""A backbone becomes an adapted model: ``AdapterClassifier`` = backbone + pooler + head, by composition."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.methods import get_recipe
from adapters_kit.methods.adapters import block_index
from adapters_kit.model.heads import POOLERS, build_head


class AdapterClassifier(nn.Module):
    """Classifier over a (possibly adapted) backbone. No training code lives here.

    ``forward`` takes either the processor's inputs (``input_ids``, ``attention_mask``...) or precomputed
    ``features`` (the pooled vectors a frozen backbone gives), and returns logits.
    """

    def __init__(self, backbone: nn.Module, pooling: str, head: nn.Module,
                 aux_heads: dict[str, nn.Module] | None = None):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.pool = POOLERS.get(pooling)
        self.head = head
        self.aux_heads = nn.ModuleDict(aux_heads or {})
        """Heads an objective trains beside the task head (DANN's domain classifier, a joint source head)."""

    @property
    def feature_dim(self) -> int:
        """Width of the pooled features."""
        return feature_dim(self.backbone)

    def encoder(self) -> "AdapterClassifier":
        """The same backbone and pooling without a head: ``forward`` returns the pooled features."""
        return AdapterClassifier(self.backbone, self.pooling, nn.Identity())

    def features(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone output, shape (batch, hidden).

        ``pooler`` takes the backbone's own pooled output (a CNN's global average pool); feature maps
        (batch, channels, height, width) are pooled over their positions; an attention mask over audio samples
        is reduced to the backbone's frames before pooling.
        """
        return self.pooled(self.backbone(**inputs), inputs.get("attention_mask"))

    def pooled(self, out, mask: torch.Tensor | None) -> torch.Tensor:
        """This model's pooling of a backbone output (``features`` = backbone, then this): a server that runs one
        backbone pass for several runs pools the same output once per run."""
        if self.pooling == "pooler" and getattr(out, "pooler_output", None) is not None:
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if hidden.dim() == 4:
            hidden = hidden.flatten(2).transpose(1, 2)
        if mask is not None and mask.shape[1] != hidden.shape[1]:
            mask = self._frame_mask(mask, hidden.shape[1])
        return self.pool(hidden, mask)

    def _frame_mask(self, mask: torch.Tensor, frames: int) -> torch.Tensor:
        base = self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone
        if hasattr(base, "_get_feature_vector_attention_mask"):  # wav2vec2 / HuBERT: exact conv arithmetic
            return base._get_feature_vector_attention_mask(frames, mask)
        lengths = (mask.sum(1).float() * frames / mask.shape[1]).ceil().long()
        return (torch.arange(frames, device=mask.device)[None] < lengths[:, None]).long()

    def forward(self, features: torch.Tensor | None = None, aux: str | None = None,
                **inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``aux``, (logits, that auxiliary head's output) from the same features."""
        if features is None:
            features = self.features(**inputs)
        if aux is None:
            return self.head(features)
        return self.head(features), self.aux_heads[aux](features)

    def train(self, mode: bool = True) -> "AdapterClassifier":
        """Train mode for the parts that learn; a wholly frozen backbone stays in eval mode (no dropout), so it
        computes exactly the features inference sees, as a probe's cached features are.

        BatchNorm layers always stay in eval mode: their running statistics keep the pretrained values, which
        are what a reloaded run has (adapters do not save running statistics), so a model predicts the same in
        memory and after save -> reload. Their affine weights still train when the method trains them."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.backbone.parameters()):
            self.backbone.eval()
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def trained_blocks(self) -> tuple[list[int], int]:
        """(indices of the backbone's repeated blocks holding trainable parameters, number of blocks): which blocks
        a method adapted, e.g. ([3, 4, 5], 6) for LoRA's default top half of a 6-block encoder."""
        blocks = {n: block_index(n) for n, _ in self.backbone.named_parameters()}
        trained = sorted({blocks[n] for n, p in self.backbone.named_parameters()
                          if p.requires_grad and blocks[n] is not None})
        return trained, len({b for b in blocks.values() if b is not None})

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        return sum(p.numel() for p in self.parameters() if p.requires_grad), total


def feature_dim(backbone: nn.Module) -> int:
    """Width of the pooled features: the config's hidden size, a CNN's last stage width, or the channels of its
    last convolution (MobileNetV2's final 1x1 conv)."""
    config = backbone.config
    for attr in ("hidden_size", "d_model", "n_embd"):
        if isinstance(getattr(config, attr, None), int):
            return getattr(config, attr)
    if isinstance(getattr(config, "hidden_sizes", None), (list, tuple)) and config.hidden_sizes:
        return int(config.hidden_sizes[-1])
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs[-1].out_channels
    raise UserError(f"cannot tell the feature size of a {type(config).__name__}; this backbone is not supported")


def build_model(cfg: TrainConfig, backbone: nn.Module, num_labels: int,
                aux_heads: Callable[[int], dict[str, nn.Module]] | None = None) -> AdapterClassifier:
    """Attach the adapter ``cfg.method``'s recipe trains and a fresh ``cfg.head`` to a loaded backbone.

    ``cfg.pooling`` must be resolved (not None).

    >>> from transformers import BertConfig, BertModel
    >>> bb = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    >>> m = build_model(TrainConfig(method="probe", pooling="mean"), bb, num_labels=3)
    >>> m.trainable_parameters()[0]   # only the head: 32 * 3 + 3
    99
    """
    adapter = get_recipe(cfg.method).adapter(cfg)
    # The head's initial weights depend on the seed alone, not on how much randomness loading the backbone used.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        head = build_head(cfg.head, feature_dim(backbone), num_labels, cfg.head_dropout)
        extra = aux_heads(feature_dim(backbone)) if aux_heads else {}
    return AdapterClassifier(adapter.attach(backbone, cfg), cfg.pooling, head, extra)
