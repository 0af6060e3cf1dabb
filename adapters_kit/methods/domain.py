"""Two recipes that add a second data set's loss to the adapter's training, and their objectives.

- ``dann`` (Ganin et al., 2016): each labelled source batch is joined by an unlabelled target-domain batch; a domain
  classifier sits on the pooled features behind a gradient-reversal layer, so the backbone learns features the
  domain classifier cannot separate. The reversal weight follows lambda_p = 2 / (1 + exp(-10 p)) - 1 over training
  progress p. Target labels are never read.
- ``joint``: L = L_S + lambda * L_T: each target batch (the run's ``--data``) is joined by a batch of the source
  task (``--source-data``), scored by its own head on the shared backbone.

Both join the two batches into one forward pass (padding the shorter inputs), so a distributed model runs exactly
one forward and one backward per step. The second data set's batches come from the training layer's
:class:`adapters_kit.train.objectives.BatchStream`, whose position checkpoints save.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adapters_kit.methods.recipe import METHODS, Context, Wrapping

DOMAIN_HEAD, SOURCE_HEAD = "domain", "source"


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


class GradientReversal(nn.Module):
    """Identity forward; gradient multiplied by ``-weight`` backward (the weight is set by the objective)."""

    def __init__(self):
        super().__init__()
        self.weight = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Reverse.apply(x, self.weight)


def dann_lambda(progress: float) -> float:
    """Ganin et al.'s schedule: 0 at the start, approaching 1 at the end."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def join(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate two batches of model inputs, zero-padding sequence inputs to the longer one (the attention
    mask is 0 there, so padding is never attended to or pooled)."""
    out = {}
    for key in a:
        x, y = a[key], b[key]
        if x.dim() >= 2 and x.shape[1:] != y.shape[1:]:
            length = max(x.shape[1], y.shape[1])
            x = F.pad(x, (0, length - x.shape[1]))
            y = F.pad(y, (0, length - y.shape[1]))
        out[key] = torch.cat([x, y])
    return out


class DomainAdversarial:
    """Task loss on the source batch + domain loss (source 0, target 1) through the gradient reversal."""

    def __init__(self, target, task):
        self.stream, self.task = target, task

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {DOMAIN_HEAD: nn.Sequential(GradientReversal(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))}

    def loss(self, model, batch, labels, progress):
        target = next(self.stream)
        target.pop("labels", None)  # never used
        inner = getattr(model, "module", model)  # the reversal weight lives on the (possibly wrapped) model
        inner.aux_heads[DOMAIN_HEAD][0].weight = dann_lambda(progress)
        logits, domain = model(**join(batch, target), aux=DOMAIN_HEAD)
        n = len(labels)
        is_target = torch.cat([torch.zeros(n), torch.ones(len(domain) - n)]).to(domain.device)
        return self.task.loss(logits[:n], labels) + F.binary_cross_entropy_with_logits(domain[:, 0], is_target)


class Joint:
    """L = L_S + lambda * L_T with a source head beside the target head: the source task is classification
    (cross-entropy), the target task's loss is its own task's."""

    def __init__(self, source, num_source_labels: int, weight: float, head_factory, task):
        self.stream, self.num_source_labels = source, num_source_labels
        self.weight, self.head_factory, self.task = weight, head_factory, task

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {SOURCE_HEAD: self.head_factory(dim, self.num_source_labels)}

    def loss(self, model, batch, labels, progress):
        source = next(self.stream)
        source_labels = source.pop("labels")
        logits, source_logits = model(**join(batch, source), aux=SOURCE_HEAD)
        n = len(labels)
        return F.cross_entropy(source_logits[n:], source_labels) + self.weight * self.task.loss(logits[:n], labels)


@METHODS.register("dann")
class Dann(Wrapping):
    """Domain-adversarial training of the adapter on unlabelled target-domain inputs."""

    name = "dann"
    pooled = True
    card_text = "domain-adversarial training (DANN) of the adapter on unlabelled target-domain data"
    knobs = ("adapter", "target_data", "compare_source_only")
    needs = (("target_data", "unlabelled target-domain inputs"),)

    def objective(self, ctx: Context) -> DomainAdversarial:
        stream, _ = ctx.stream(ctx.cfg.target_data, labelled=False)
        ctx.print(f"{self.name}: {len(stream.loader.dataset)} target-domain examples")
        return DomainAdversarial(stream, ctx.task)

    def extra_metrics(self, ctx: Context, metrics: dict[str, Any]) -> dict[str, Any]:
        """With ``compare_source_only``: the same adapter, seed and budget without the domain loss."""
        if not (ctx.cfg.compare_source_only and "test" in metrics):
            return {}
        ctx.print("training the source-only baseline (same adapter and budget, no domain loss)")
        baseline = ctx.variant(method=ctx.cfg.adapter, target_data=None, compare_source_only=False)
        return {"test_source_only": baseline["test"]}


@METHODS.register("joint")
class JointTraining(Wrapping):
    """The target task trained together with a labelled source task on the shared backbone."""

    name = "joint"
    pooled = True
    card_text = "joint training with a source task (L = L_S + lambda * L_T)"
    knobs = ("adapter", "source_data", "joint_lambda")
    needs = (("source_data", "the labelled source task"),)

    def objective(self, ctx: Context) -> Joint:
        stream, num_labels = ctx.stream(ctx.cfg.source_data, labelled=True)
        ctx.print(f"{self.name}: {len(stream.loader.dataset)} source-task examples")
        return Joint(stream, num_labels, ctx.cfg.joint_lambda, ctx.new_head, ctx.task)
