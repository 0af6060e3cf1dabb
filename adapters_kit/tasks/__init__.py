"""Tasks: what comes out of the model and how it is scored (head size, loss, decoding, pipeline tag)."""

from adapters_kit.tasks import classification  # noqa: F401  (registers itself)
from adapters_kit.tasks.base import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
