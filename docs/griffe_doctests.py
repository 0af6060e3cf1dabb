"""Griffe extension for the API reference: adapters_kit's docstrings, written for ``help()`` and doctest, read as
Markdown.

- ``>>>`` examples in the running text (the test suite runs them as doctests) become fenced ``pycon`` blocks.
  Unfenced, ``>>>`` would start nested block quotes and ``x["test"]["accuracy"]`` a reference link.
  ``# doctest:`` flags are dropped from the rendered text.
- Sphinx roles (``:class:`Classifier```) become code spans.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

PROMPT = re.compile(r"^(\s*)>>> ")
FLAGS = re.compile(r"\s*# doctest:.*$")
EXAMPLES_SECTION = re.compile(r"^\s*Examples?:\s*$", re.M)  # griffe's own parser handles those
SPHINX_ROLE = re.compile(r":(?:mod|class|func|meth|attr|obj|data|exc):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        match = PROMPT.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent = match.group(1)
        if out and out[-1].strip():  # a fence opens a block of its own
            out.append("")
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():  # a doctest block runs to the next blank line
            out.append(FLAGS.sub("", lines[i]))
            i += 1
        out += [f"{indent}```", ""]
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        docstring.value = SPHINX_ROLE.sub(r"`\1`", docstring.value)
        if ">>> " in docstring.value and not EXAMPLES_SECTION.search(docstring.value):
            docstring.value = fence_doctests(docstring.value)
