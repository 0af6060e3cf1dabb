"""What a run's outputs mean: :class:`LabelMap` (output names in id order, plus what the task fitted on the training
split), and how a label cell is read as text (:func:`normalize_label`).

Labels are text, normalised one way wherever they are read (training split, held-out splits, and a saved run's
``labels.json``): surrounding whitespace is stripped, the rest kept verbatim (``"sport "`` is ``"sport"``,
``"Sport"`` another class; ``"001"``, ``"NA"``, ``"None"`` stay as written); an empty or blank cell is a missing
label. Typed values (JSON, Parquet, built-ins) are written with ``str`` (``3`` -> ``"3"``), but a float holding an
integer as that integer (``1.0`` -> ``"1"``): pandas stores an integer column with a gap as floats, and one class
must not get two names in two files. Classes are ordered by integer value when every name is an integer literal
(``001, 002, 010``), else by string; a ClassLabel keeps its order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class LabelMap:
    """Output names in id order (classes, labels, or a regression's target columns); ``id2label``/``label2id`` as
    transformers configs spell them. ``params``: what the task fitted on the training split and keeps with the run
    (a regression's target mean and scale, a multi-label run's decision thresholds), JSON values."""

    names: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict, compare=True)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def with_params(self, **params: Any) -> "LabelMap":
        """A copy with some fitted parameters set."""
        return LabelMap(self.names, {**self.params, **params})


def normalize_label(value: Any) -> str | None:
    """A label as the module docstring says: text, surrounding whitespace stripped; ``None`` when it is missing
    or blank. Raises TypeError for a list or a record, which is not one label.

    >>> normalize_label(" sport "), normalize_label(3), normalize_label(1.0), normalize_label("NA"), normalize_label("")
    ('sport', '3', '1', 'NA', None)
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        raise TypeError(f"a label is one value, not a {type(value).__name__}: {value!r:.60}")
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if value.is_integer():  # 1.0 from a column pandas made float because of a gap is the class "1"
            value = int(value)
    return str(value).strip() or None


def sort_label_names(names: Iterable[str]) -> tuple[str, ...]:
    """Distinct class names in id order: by integer value when every one is an integer literal, else by string."""
    unique = set(names)
    if unique and all(_INTEGER.fullmatch(n) for n in unique):
        return tuple(sorted(unique, key=lambda n: (int(n), n)))
    return tuple(sorted(unique))


def listed(names: list[str], limit: int = 5) -> str:
    """``'a', 'b', 'c' and 4 more``: names for a message."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
