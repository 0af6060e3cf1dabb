"""How a YAML or command-line value becomes a config field's type, and why one cannot (L0: no torch)."""

from __future__ import annotations

import math
from typing import Any

import yaml

from adapters_kit.errors import UserError

_NONE = {None, "none", "None", "null", "~", ""}
_KINDS = ("bool", "int", "float", "str", "dict")
_KIND_WORDS = {"bool": "true or false", "int": "an integer", "float": "a finite number", "str": "a string",
               "dict": "a mapping"}


def kind_of(annotation: str) -> str:
    """The base type of a field's annotation: ``int | None`` -> ``int``, ``dict[str, Any]`` -> ``dict``."""
    first = annotation.split(" | ")[0]
    return next((k for k in _KINDS if first.startswith(k)), "str")


def type_problem(kind: str, value: Any) -> str | None:
    """Why ``value`` cannot be a field of this kind, or None. ``None`` passes: optionality is checked per field.
    A bool is never a number here (Python counts True as 1, a config must not), and a float must be finite."""
    if value is None:
        return None
    if kind == "int":
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        fits = isinstance(value, {"bool": bool, "str": str, "dict": dict}[kind])
    return None if fits else f"must be {_KIND_WORDS[kind]}, got {value!r}"


def coerce(name: str, annotation: str, value: Any) -> Any:
    """Turn a YAML or command-line value into the field's type, or say which key is wrong and why.

    Strings are parsed (the CLI passes every value as text; ``true`` / ``false`` for bools). A YAML bool
    (``yes``, ``true``...) is refused for number and text fields: ``epochs: yes`` is a mistake, not 1. Numbers are
    accepted for text fields (a column named ``1``) and kept as their text."""
    optional = "None" in annotation
    if value in _NONE if isinstance(value, str) or value is None else False:
        if optional:
            return None
        raise UserError(f"invalid config: {name} cannot be empty")
    kind = kind_of(annotation)
    try:
        if isinstance(value, bool) and kind != "bool":
            raise ValueError
        if kind == "float":
            return float(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "bool":
            return value if isinstance(value, bool) else {"true": True, "false": False}[str(value).lower()]
        if kind == "dict":
            # Earlier versions read a mapping back as its text ("{}"); such run folders still load.
            return dict(yaml.safe_load(value) or {}) if isinstance(value, str) else dict(value)
        if not isinstance(value, (str, int, float)):
            raise ValueError
        return str(value)
    except (ValueError, TypeError, KeyError, OverflowError, yaml.YAMLError):
        raise UserError(f"invalid config: {name} must be {_KIND_WORDS[kind]}, got {value!r}") from None
