"""Training objectives: the loss of one step. Plain cross-entropy, or a method's extra loss on top of it.

- ``cross-entropy``: the task loss on the labelled batch.
- ``dann`` (Ganin et al., 2016): each labelled source batch is joined by an unlabelled target-domain batch; a domain
  classifier sits on the pooled features behind a gradient-reversal layer, so the backbone learns features the
  domain classifier cannot separate. The reversal weight follows lambda_p = 2 / (1 + exp(-10 p)) - 1 over training
  progress p. Target labels are never read.
- ``joint``: L = L_S + lambda * L_T: each target batch (the run's ``--data``) is joined by a batch of the source
  task (``--source-data``), scored by its own head on the shared backbone.

Both join the two batches into one forward pass (padding the shorter inputs), so a distributed model runs exactly
one forward and one backward per step. Objectives draw their auxiliary batches from a :class:`BatchStream` over
their own (prepared) loader; its position is saved in checkpoints, so a resumed run draws the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn

DOMAIN_HEAD, SOURCE_HEAD = "domain", "source"


class Objective(Protocol):
    stream: "BatchStream | None"
    """Where the auxiliary batches come from (None: no auxiliary batches)."""

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        """Extra heads the model must carry (trained with it, dropped when the run is saved)."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], labels: torch.Tensor,
             progress: float) -> torch.Tensor:
        """The step's loss; ``progress`` runs from 0 to 1 over training."""


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


class BatchStream:
    """Endless batches from a loader, pass e shuffled with ``seed + e`` (through the loader's own generator);
    ``drawn`` counts the batches handed out, and :meth:`restore` continues from such a count."""

    def __init__(self, loader, generator: torch.Generator | None = None, seed: int = 0):
        self.loader, self.generator, self.seed = loader, generator, seed
        self.drawn = 0
        self._it: Iterator[dict[str, Any]] | None = None

    def restore(self, drawn: int) -> None:
        self.drawn, self._it = drawn, None

    def _start(self) -> None:
        passes, skip = divmod(self.drawn, len(self.loader))
        if self.generator is not None:
            self.generator.manual_seed(self.seed + passes)
        self._it = iter(self.loader)
        for _ in range(skip):  # the batches drawn before a checkpoint: loaded again, not used
            next(self._it)

    def __next__(self) -> dict[str, Any]:
        if self._it is None:
            self._start()
        try:
            batch = next(self._it)
        except StopIteration:  # a pass is over: the next one, reshuffled
            self._start()
            batch = next(self._it)
        self.drawn += 1
        return batch

    def __iter__(self) -> "BatchStream":
        return self


class CrossEntropy:
    stream: BatchStream | None = None

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {}

    def loss(self, model, batch, labels, progress):
        return F.cross_entropy(model(**batch), labels)


class DomainAdversarial:
    """Task loss on the source batch + domain loss (source 0, target 1) through the gradient reversal."""

    def __init__(self, target: BatchStream):
        self.stream = target

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
        return F.cross_entropy(logits[:n], labels) + F.binary_cross_entropy_with_logits(domain[:, 0], is_target)


class Joint:
    """L = L_S + lambda * L_T with a source head beside the target head."""

    def __init__(self, source: BatchStream, num_source_labels: int, weight: float, head_factory):
        self.stream, self.num_source_labels = source, num_source_labels
        self.weight, self.head_factory = weight, head_factory

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {SOURCE_HEAD: self.head_factory(dim, self.num_source_labels)}

    def loss(self, model, batch, labels, progress):
        source = next(self.stream)
        source_labels = source.pop("labels")
        logits, source_logits = model(**join(batch, source), aux=SOURCE_HEAD)
        n = len(labels)
        return F.cross_entropy(source_logits[n:], source_labels) + self.weight * F.cross_entropy(logits[:n], labels)
