"""Knowledge distillation's objective: the student learns the teacher's outputs, and the gold labels where there are
some.

L = soft(student, teacher; T) + alpha * gold(student, labels), where ``soft`` is the task's own distillation loss
(classification: KL divergence of the temperature-softened distributions, times T^2) averaged over every example of
the batch, and ``gold`` the task's training loss averaged over the examples that carry a label (inputs of
``--unlabeled-data`` carry none: the teacher labels them). The teacher's outputs ride in the batch itself, in the
:data:`TEACHER` column the training layer adds to the training split, so any sampler, process count or resumed run
pairs every example with its own teacher output.
"""

from __future__ import annotations

from torch import nn

TEACHER = "teacher_outputs"
"""The training split's column holding the teacher's outputs for each example."""
LABELLED = "labelled"
"""The training split's column: 1 where the example's gold label may be read, 0 for teacher-labelled inputs."""


class Distillation:
    """The distillation objective of one student run (no auxiliary batches, no extra heads)."""

    stream = None

    def __init__(self, task, temperature: float, alpha: float):
        self.task, self.temperature, self.alpha = task, temperature, alpha

    def aux_heads(self, dim: int) -> dict[str, nn.Module]:
        return {}

    def loss(self, model, batch, labels, progress):
        teacher, labelled = batch.pop(TEACHER), batch.pop(LABELLED).bool()
        outputs = model(**batch)
        loss = self.task.distill_loss(outputs, teacher, self.temperature)
        if self.alpha and bool(labelled.any()):
            loss = loss + self.alpha * self.task.loss(outputs[labelled], labels[labelled])
        return loss
