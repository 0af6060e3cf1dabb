"""Autoencoder pretraining: a denoising reconstruction stage on unlabelled in-domain inputs, before fine-tuning.

The recipe runs the reconstruction stage through the same training loop as the supervised one (accumulation,
progress, logging, checkpoints ``checkpoint-pretrain-<step>`` and ``--resume``).

The adapter (``--adapter``, LoRA by default) first learns to reconstruct corrupted inputs; the supervised stage
then trains that adapter further, with the head, from where reconstruction left it. The objective suits the input:

- token ids (text, decoder LMs): **masked-token reconstruction**. ``mask_ratio`` (default 0.15) of each
  sequence's real tokens (no special or unknown tokens, no padding; at least one) are replaced by the tokenizer's
  mask token (a random vocabulary token where it has none, as decoder LMs), and a decoder - dense, GELU,
  LayerNorm, then the backbone's own input-embedding matrix transposed, BERT's MLM head shape - predicts the
  original ids there from the last hidden states. Cross-entropy over the masked positions.
- images, spectrograms, waveforms: **masked-patch reconstruction through the pooled features**. The input is cut
  into cells (images: an 8 x 8 grid; audio: 16 chunks along time) and ``mask_ratio`` (default 0.5) of them are
  blanked (set to 0, the normalised mean). A linear decoder predicts, from the pooled feature vector the classifier
  will use, a low-resolution copy of the clean input (images: 16 x 16 average-pooled pixels per channel;
  spectrograms: every bin over 32 time steps; waveforms: the mean-absolute-amplitude envelope over 64 windows).
  Mean squared error over the masked cells' part of that copy, so the features must carry what the blanked
  regions held.

The decoder is dropped afterwards; only what the adapter learned carries over.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adapters_kit.methods.recipe import METHODS, Context, Supervised, Wrapping

TEXT_MASK_RATIO, PATCH_MASK_RATIO = 0.15, 0.5
IMAGE_GRID, IMAGE_TARGET, TIME_CELLS, SPECTRUM_STEPS, ENVELOPE_WINDOWS = 8, 16, 16, 32, 64
SIGNAL_KEYS = ("pixel_values", "input_features", "input_values")


def choose(eligible: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean (batch, positions) to corrupt: ``ratio`` of each row's eligible positions (tokens, or image / audio
    cells), rounded, at least one (when it has any), chosen uniformly at random."""
    counts = eligible.sum(1)
    k = (counts.float() * ratio).round().long().clamp(min=1).minimum(counts)
    scores = torch.rand(eligible.shape, device=eligible.device).masked_fill(~eligible, 2.0)
    ranks = scores.argsort(1).argsort(1)  # rank of each position's score within its row
    return (ranks < k[:, None]) & eligible


def _cell_grid(x: torch.Tensor) -> tuple[int, ...]:
    return (IMAGE_GRID, IMAGE_GRID) if x.dim() == 4 else (TIME_CELLS,)


def _spread(cells: torch.Tensor, x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The (batch, cells) mask laid over a grid of ``size`` (nearest-neighbour), shaped to broadcast against x's
    pooled copy: (batch, 1, *size)."""
    grid = cells.view(len(cells), 1, *_cell_grid(x)).float()
    return F.interpolate(grid, size=size, mode="nearest")


def low_resolution(x: torch.Tensor) -> torch.Tensor:
    """The reconstruction target: images (B, C, H, W) -> (B, C, 16, 16) average-pooled pixels; spectrograms
    (B, bins, T) -> (B, bins, 32); waveforms (B, L) -> (B, 1, 64) mean absolute amplitude."""
    if x.dim() == 4:
        return F.adaptive_avg_pool2d(x, IMAGE_TARGET)
    if x.dim() == 3:
        return F.adaptive_avg_pool1d(x, SPECTRUM_STEPS)
    return F.adaptive_avg_pool1d(x.abs()[:, None], ENVELOPE_WINDOWS)


class Denoiser(nn.Module):
    """The classifier's encoder (backbone + pooling, no head) with a reconstruction decoder; ``forward`` corrupts
    the batch and returns the reconstruction loss."""

    def __init__(self, model, sample: dict[str, torch.Tensor], tokenizer: Any = None,
                 mask_ratio: float | None = None):
        super().__init__()
        self.encoder = model.encoder()
        dim = model.feature_dim
        self.text = "input_ids" in sample
        if self.text:
            self.ratio = TEXT_MASK_RATIO if mask_ratio is None else mask_ratio
            embeddings = model.backbone.get_input_embeddings()
            self.vocab = embeddings.weight.shape[0]
            self.mask_id = getattr(tokenizer, "mask_token_id", None)
            self.special = sorted(set(getattr(tokenizer, "all_special_ids", [])))
            self.decoder = nn.Sequential(nn.Linear(dim, embeddings.weight.shape[1]), nn.GELU(),
                                         nn.LayerNorm(embeddings.weight.shape[1]))
            self.bias = nn.Parameter(torch.zeros(self.vocab))
        else:
            self.ratio = PATCH_MASK_RATIO if mask_ratio is None else mask_ratio
            self.key = next(k for k in SIGNAL_KEYS if k in sample)
            target = low_resolution(sample[self.key][:1])
            self.decoder = nn.Linear(dim, target[0].numel())

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        batch.pop("labels", None)
        return self._tokens(batch) if self.text else self._patches(batch)

    def _tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]
        eligible = batch.get("attention_mask", torch.ones_like(ids)).bool()
        if self.special:
            eligible &= ~torch.isin(ids, torch.tensor(self.special, device=ids.device))
        chosen = choose(eligible, self.ratio)
        fill = (torch.full_like(ids, self.mask_id) if self.mask_id is not None
                else torch.randint_like(ids, self.vocab))
        out = self.encoder.backbone(**{**batch, "input_ids": torch.where(chosen, fill, ids)})
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        weight = self.encoder.backbone.get_input_embeddings().weight
        logits = self.decoder(hidden[chosen]) @ weight.T + self.bias
        # a sum over the chosen positions (none in a batch of only special / unknown tokens: loss 0, no NaN)
        return F.cross_entropy(logits, ids[chosen], reduction="sum") / chosen.sum().clamp(min=1)

    def _patches(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[self.key]
        cells = choose(torch.ones(len(x), math.prod(_cell_grid(x)), dtype=torch.bool, device=x.device), self.ratio)
        blank = _spread(cells, x, x.shape[2:] if x.dim() > 2 else x.shape[1:])
        corrupted = x * (1 - blank) if x.dim() > 2 else x * (1 - blank[:, 0])
        target = low_resolution(x)
        weight = _spread(cells, x, target.shape[2:]).expand_as(target)
        predicted = self.decoder(self.encoder.features(**{**batch, self.key: corrupted})).view_as(target)
        return ((predicted - target) ** 2 * weight).sum() / weight.sum().clamp(min=1)


class Reconstruction:
    """The objective of the reconstruction stage: the denoiser's own loss (labels, if any, are ignored)."""

    stream = None

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {}

    def loss(self, model, batch, labels, progress):
        return model(**batch)


class Pretrain:
    """The stage before the supervised one: the adapter (and a throw-away decoder) learn to reconstruct masked
    inputs for ``pretrain_epochs`` over ``pretrain_data`` (default: the training split's inputs), through the
    training loop."""

    name, key = "pretrain", "pretrain_stage"

    def run(self, ctx: Context, model) -> dict[str, Any]:
        cfg = ctx.cfg
        loader = ctx.unlabelled(cfg.pretrain_data, seed_offset=2)
        ctx.print(f"autoencoder pretraining: {cfg.pretrain_epochs} epoch(s) of masked reconstruction over "
                  f"{len(loader.dataset)} unlabelled examples")
        denoiser = denoiser_for(model, loader, ctx.processor, cfg)
        stage = cfg.replace(epochs=cfg.pretrain_epochs, max_steps=None, eval_steps=None,
                            early_stopping_patience=None, layer_decay=None)
        result = ctx.fit(denoiser, loader, {}, cfg=stage, objective=Reconstruction(), stage=self.name)
        ctx.print(f"reconstruction loss per epoch: {', '.join(f'{x:.4f}' for x in result.epoch_losses)} "
                  f"({result.train_seconds:.1f} s)")
        return {"objective": "masked-token" if denoiser.text else "masked-patch", "mask_ratio": denoiser.ratio,
                "epochs": cfg.pretrain_epochs, "examples": len(loader.dataset), "seconds": result.train_seconds,
                "reconstruction_loss": result.epoch_losses}


def denoiser_for(model, loader, tokenizer: Any, cfg) -> Denoiser:
    """The reconstruction model around ``model``'s encoder; the decoder's initial weights depend on the seed alone."""
    sample = next(iter(loader))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return Denoiser(model, sample, tokenizer, cfg.mask_ratio)


@METHODS.register("autoencoder-pretrain")
class AutoencoderPretrain(Wrapping):
    name = "autoencoder-pretrain"
    card_text = ("the adapter pretrained as a denoising autoencoder (masked reconstruction) on unlabelled in-domain "
                 "inputs, then fine-tuned")
    knobs = ("adapter", "pretrain_data", "pretrain_epochs", "mask_ratio")

    def stages(self, cfg) -> list:
        return [Pretrain(), Supervised()]
