"""Tasks: what comes out of the model and how it is scored (label reading, head size, loss, metrics, decoding,
pipeline tag)."""

from adapters_kit.tasks import classification, multilabel, regression, token  # noqa: F401  (each registers itself)
from adapters_kit.tasks.base import TASKS, Task, detect_task, get_task, task_class
from adapters_kit.tasks.labels import LabelMap, normalize_label

__all__ = ["TASKS", "LabelMap", "Task", "detect_task", "get_task", "normalize_label", "task_class"]
