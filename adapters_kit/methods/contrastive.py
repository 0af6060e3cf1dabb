"""``contrastive``: tune the backbone on pairs of training examples, then solve the head (SetFit's recipe, Tunstall et
al., 2022), for runs with few labels.

Stage ``pairs``: the backbone, through the ``--adapter`` strategy (LoRA by default), learns pooled embeddings in
which examples of one label lie close. Every training batch is a set of pairs: all B(B-1)/2 pairs of its examples,
so there is no pair-sampling step and the work per step is bounded by the batch size whatever the number of classes.
Each pair's cosine similarity is pulled towards 1 for the same label and 0 otherwise (SetFit's
``CosineSimilarityLoss``), positive and negative pairs weighing half each, so the loss stays balanced when most pairs
of a batch are negative (many classes). Stage ``main``: the head is a logistic regression on the tuned backbone's
features, solved in closed form (:class:`~adapters_kit.methods.recipe.ClosedForm`), then every split is scored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adapters_kit.errors import UserError
from adapters_kit.methods.recipe import METHODS, ClosedForm, Context, Wrapping


def pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean squared gap between each pair's cosine similarity and its target (1: same label, 0: different),
    averaged over positive and over negative pairs separately, the two averages weighing equally (a batch without
    positive pairs, or without negative ones, uses the other average alone)."""
    z = F.normalize(embeddings, dim=-1)
    similarity = z @ z.T
    same = labels[:, None] == labels[None, :]
    upper = torch.ones_like(same).triu(1)  # each unordered pair once, never an example with itself
    terms = [((similarity[mask] - target) ** 2).mean()
             for mask, target in ((same & upper, 1.0), (~same & upper, 0.0)) if mask.any()]
    if not terms:  # a batch of one example has no pair
        return embeddings.sum() * 0.0
    return torch.stack(terms).mean()


class PairObjective:
    """The ``pairs`` stage's loss: :func:`pair_loss` on the batch's pooled features (the head is not used)."""

    stream = None

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {}

    def loss(self, model, batch, labels, progress):
        return pair_loss(model.features(**batch), labels)


class PairStage:
    """Tune the backbone on the training batches' pairs (no validation: what it learns is judged by the head)."""

    name, key = "pairs", "pairs_stage"

    def run(self, ctx: Context, model) -> dict[str, Any]:
        loaders = ctx.input_loaders()
        ctx.print(f"contrastive stage: {ctx.cfg.epochs} epoch(s) over the pairs of each training batch of "
                  f"{ctx.cfg.batch_size}")
        result = ctx.fit(model, loaders["train"], {}, cfg=ctx.cfg.replace(eval_steps=None,
                                                                          early_stopping_patience=None),
                         objective=PairObjective(), stage=self.name)
        return {"epochs": ctx.cfg.epochs, "train_seconds": result.train_seconds}


@METHODS.register("contrastive")
class Contrastive(Wrapping):
    name = "contrastive"
    pooled = solves_head = True
    min_per_label = 2
    card_text = "the backbone tuned on pairs of training examples (contrastive), then a closed-form linear head"

    def defaults(self, cfg) -> dict[str, Any]:
        adapter = self.adapter(cfg)
        # Few examples make few steps per epoch: more epochs than the adapter's own default.
        return {"lr": adapter.default_lr, "epochs": 10, "attention_dropout": adapter.default_attention_dropout}

    def check(self, cfg) -> None:
        if cfg.head != "linear":
            raise UserError(f"invalid config: {self.name} solves a linear head in closed form; use --head linear")
        super().check(cfg)

    def stages(self, cfg) -> list:
        return [PairStage(), ClosedForm()]
