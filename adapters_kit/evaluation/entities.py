"""Entity-level scoring of tag sequences (NER, chunking) as seqeval computes it, and per-tag scoring for untyped
tag sets such as part-of-speech tags.

Two ways of reading entities from tags, both seqeval's:

- ``mode="strict"`` (``classification_report(..., mode="strict", scheme=...)``): an entity is a run of tokens
  that follows the scheme's pattern exactly (IOB2: ``B-X I-X*``; BIOES: ``B-X I-X* E-X`` or ``S-X``); a stray
  ``I-X`` or a run cut by a change of type is no entity, and a prefix the scheme does not have raises.
- ``mode="lenient"`` (seqeval's default, conlleval's rules): any change of type or prefix opens or closes a chunk,
  so ``I-X`` after ``O`` starts an entity whatever the scheme says.

Entities are ``(type, start, end)`` with ``end`` exclusive. The state of :class:`EntityMetrics` is integer counts
only, so results do not depend on the order or batching of the updates.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Sequence

ANY = "IOBESLU"
SAME, DIFF, EITHER = "same", "diff", "any"
_IOB_INSIDE = (("B", "I", SAME), ("I", "I", SAME))
SCHEMES: dict[str, dict[str, Any]] = {
    # seqeval.scheme's token classes as (previous prefixes, current prefixes, type condition) patterns
    "IOB1": {"allowed": "IOB", "inside": _IOB_INSIDE,
             "start": (("O", "I", EITHER), ("I", "I", DIFF), ("B", "I", EITHER), ("I", "B", SAME), ("B", "B", SAME)),
             "end": (("I", "I", DIFF), ("I", "O", EITHER), ("I", "B", EITHER), ("B", "O", EITHER), ("B", "I", DIFF),
                     ("B", "B", SAME))},
    "IOB2": {"allowed": "IOB", "inside": _IOB_INSIDE, "start": ((ANY, "B", EITHER),),
             "end": (("I", "O", EITHER), ("I", "I", DIFF), ("I", "B", EITHER), ("B", "O", EITHER), ("B", "I", DIFF),
                     ("B", "B", EITHER))},
    "IOE1": {"allowed": "IOE", "inside": (("I", "I", SAME), ("I", "E", SAME)),
             "start": (("O", "I", EITHER), ("I", "I", DIFF), ("E", "I", EITHER), ("E", "E", SAME)),
             "end": (("I", "I", DIFF), ("I", "O", EITHER), ("I", "E", DIFF), ("E", "I", SAME), ("E", "E", SAME))},
    "IOE2": {"allowed": "IOE", "inside": (("I", "E", SAME), ("I", "I", SAME)),
             "start": (("O", "I", EITHER), ("O", "E", EITHER), ("E", "I", EITHER), ("E", "E", EITHER),
                       ("I", "I", DIFF), ("I", "E", DIFF)),
             "end": (("E", ANY, EITHER),)},
    "BIOES": {"allowed": "IOBES", "start": ((ANY, "B", EITHER), (ANY, "S", EITHER)),
              "inside": (("B", "I", SAME), ("B", "E", SAME), ("I", "I", SAME), ("I", "E", SAME)),
              "end": (("S", ANY, EITHER), ("E", ANY, EITHER))},
    "BILOU": {"allowed": "BILOU", "start": ((ANY, "B", EITHER), (ANY, "U", EITHER)),
              "inside": (("B", "I", SAME), ("B", "L", SAME), ("I", "I", SAME), ("I", "L", SAME)),
              "end": (("U", ANY, EITHER), ("L", ANY, EITHER))},
}
ALIASES = {"IOBES": "BIOES"}
"""seqeval's name for BIOES."""
NO_SCHEME = "none"
"""Untyped tags (part of speech ...): scored per tag, not per entity."""
MODES = ("strict", "lenient")
_PREFIXED = re.compile(r"[BIESLU]-.+")


def _scheme(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {name!r}; choose one of: {', '.join(sorted(SCHEMES))}")
    return name


def _token(tag: str) -> tuple[str, str]:
    """(prefix, type) as seqeval's strict ``Token`` reads a tag: ``B-PER`` -> (B, PER), ``O`` -> (O, _)."""
    if not tag or tag[0] not in ANY:
        raise ValueError(f"tag {tag!r} has no known prefix ({', '.join(ANY)})")
    return tag[0], tag[1:].strip("-") or "_"


def _match(prev: tuple[str, str], cur: tuple[str, str], patterns: Iterable[tuple[str, str, str]]) -> bool:
    same = prev[1] == cur[1]
    return any(prev[0] in p and cur[0] in c and (cond == EITHER or same == (cond == SAME)) for p, c, cond in patterns)


def _strict_entities(tags: Sequence[str], scheme: str) -> list[tuple[str, int, int]]:
    """seqeval's ``Tokens.entities``: walk the tokens, keep the runs that start, continue and end by the patterns."""
    rules = SCHEMES[scheme]
    tokens = [_token(t) for t in tags] + [("O", "_")]  # the closing O lets the last entity end
    out, i, prev = [], 0, ("O", "_")
    while i < len(tokens):
        tok = tokens[i]
        if tok[0] not in rules["allowed"]:
            raise ValueError(f"invalid tag {tags[i]!r} for scheme {scheme} (prefixes {rules['allowed']})")
        if _match(prev, tok, rules["start"]):
            j, inner = i + 1, tok
            while _match(inner, tokens[j], rules["inside"]):  # stops at the closing O at the latest
                inner, j = tokens[j], j + 1
            if _match(tokens[j - 1], tokens[j], rules["end"]):
                out.append((tok[1], i, j))
            i = j
        else:
            i += 1
        prev = tokens[i - 1]
    return out


def _lenient_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """seqeval's default ``get_entities`` (conlleval): chunks open and close on any change of prefix or type."""
    out, prev_tag, prev_type, begin = [], "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):
        if not chunk:
            raise ValueError("empty tag")
        tag, type_ = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
        changed = prev_type != type_
        if prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO") or (prev_tag not in "O." and changed):
            out.append((prev_type, begin, i))
        if tag in "BS" or (prev_tag in "ESO" and tag in "EI") or (tag not in "O." and changed):
            begin = i
        prev_tag, prev_type = tag, type_
    return out


def get_entities(tags: Sequence[str], scheme: str, mode: str = "strict") -> list[tuple[str, int, int]]:
    """The entities of one sentence's tags.

    Args:
        tags: One tag per token, e.g. ``["B-PER", "I-PER", "O"]``.
        scheme: ``IOB1``, ``IOB2``, ``IOE1``, ``IOE2``, ``BIOES`` (or ``IOBES``) or ``BILOU``.
        mode: ``strict`` (the scheme's patterns, invalid prefixes raise) or ``lenient`` (seqeval's default,
            conlleval's rules; the scheme is only checked to be known).

    Returns:
        ``(type, start, end)`` triples, ``end`` exclusive, in order of ``start``.

    >>> get_entities(["I-PER", "I-PER", "O", "B-LOC"], "IOB2")
    [('LOC', 3, 4)]
    >>> get_entities(["I-PER", "I-PER", "O", "B-LOC"], "IOB2", mode="lenient")
    [('PER', 0, 2), ('LOC', 3, 4)]
    """
    scheme = _scheme(scheme)
    if mode == "strict":
        return _strict_entities(tags, scheme)
    if mode == "lenient":
        return _lenient_entities(tags)
    raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")


def detect_scheme(tag_set: Iterable[str]) -> str:
    """The tagging scheme of a label set.

    ``BIOES`` when ``E-``/``S-`` tags appear with ``B-`` or ``S-`` ones (``IOE2`` with only ``I-``/``E-``),
    ``BILOU`` when ``L-``/``U-`` appear, ``IOB1`` when every prefixed tag is ``I-``, else ``IOB2``; ``"none"`` when no
    tag has a ``B-``/``I-``/``E-``/``S-``/``L-``/``U-`` prefix (part-of-speech tags).

    Raises:
        ValueError: naming the offending tags, for a mix of prefixed and unprefixed tags (other than ``O``) or of
            BIOES and BILOU prefixes.

    >>> detect_scheme(["O", "B-PER", "I-PER"]), detect_scheme(["NOUN", "VERB"])
    ('IOB2', 'none')
    """
    tags = set(tag_set)
    prefixed = {t for t in tags if _PREFIXED.fullmatch(t)}
    if not prefixed:
        return NO_SCHEME
    plain = tags - prefixed - {"O"}
    if plain:
        raise ValueError(f"tag set mixes entity tags ({', '.join(sorted(prefixed)[:3])} ...) with tags without a "
                         f"B-/I-/E-/S- prefix: {', '.join(sorted(plain))}")
    letters = {t[0] for t in prefixed}
    if letters & set("ES") and letters & set("LU"):
        mixed = sorted(t for t in prefixed if t[0] in "ESLU")
        raise ValueError(f"tag set mixes BIOES (E-/S-) and BILOU (L-/U-) tags: {', '.join(mixed)}")
    if letters & set("LU"):
        return "BILOU"
    if letters & set("ES"):
        return "BIOES" if letters & set("BS") else "IOE2"
    return "IOB1" if letters == {"I"} else "IOB2"


def _prf(tp: int, predicted: int, support: int) -> dict[str, Any]:
    """Precision, recall, F1 and support of counts; None where the ratio is 0/0."""
    return {"precision": tp / predicted if predicted else None, "recall": tp / support if support else None,
            "f1": 2 * tp / (predicted + support) if predicted + support else None, "support": support}


class EntityMetrics:
    """Accumulates tagged sentences; entity-level (or, for untyped tags, per-tag) precision, recall and F1.

    Args:
        tag_names: The run's tag set; fixes the scheme when ``scheme`` is None and the types listed per type.
        scheme: A scheme of :data:`SCHEMES` (``IOBES`` is an alias of ``BIOES``) or ``"none"``; detected from
            ``tag_names`` when None.
        mode: ``strict`` or ``lenient``, as in :func:`get_entities`.

    >>> m = EntityMetrics(["O", "B-PER", "I-PER"])
    >>> m.update([["B-PER", "I-PER", "O"]], [["B-PER", "O", "O"]])
    >>> m.compute()["entity_f1"], m.compute()["token_accuracy"]
    (0.0, 0.6666666666666666)
    """

    def __init__(self, tag_names: Sequence[str], scheme: str | None = None, mode: str = "strict"):
        self.tag_names = list(tag_names)
        scheme = detect_scheme(self.tag_names) if scheme is None else scheme
        self.scheme = scheme if scheme == NO_SCHEME else _scheme(scheme)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        self.mode = mode
        if self.scheme == NO_SCHEME:
            self.labels = sorted(set(self.tag_names))
        else:
            self.labels = sorted({_token(t)[1] for t in self.tag_names if _PREFIXED.fullmatch(t)})
        self.n = self.tokens = self.correct = 0
        self.tp: Counter[str] = Counter()
        self.predicted: Counter[str] = Counter()
        self.support: Counter[str] = Counter()

    def update(self, sentences_true: Sequence[Sequence[str]], sentences_pred: Sequence[Sequence[str]]) -> None:
        """Add sentences: the reference tags and the predicted tags, one list per sentence, of equal lengths."""
        if len(sentences_true) != len(sentences_pred):
            raise ValueError(f"{len(sentences_true)} reference sentences but {len(sentences_pred)} predicted")
        for i, (true, pred) in enumerate(zip(sentences_true, sentences_pred)):
            if len(true) != len(pred):
                raise ValueError(f"sentence {i}: {len(true)} reference tags but {len(pred)} predicted")
            self.n += 1
            self.tokens += len(true)
            self.correct += sum(t == p for t, p in zip(true, pred))
            if self.scheme == NO_SCHEME:
                self.support.update(true)
                self.predicted.update(pred)
                self.tp.update(t for t, p in zip(true, pred) if t == p)
            else:
                gold = set(get_entities(true, self.scheme, self.mode))
                found = set(get_entities(pred, self.scheme, self.mode))
                self.support.update(e[0] for e in gold)
                self.predicted.update(e[0] for e in found)
                self.tp.update(e[0] for e in gold & found)

    def compute(self) -> dict[str, Any]:
        """Every metric, as a JSON-ready dict (``{"n": 0}`` before any update).

        Entity schemes: ``entity_f1``/``entity_precision``/``entity_recall`` (micro), ``entity_f1_macro`` (over the
        types present in the references or the predictions, as seqeval), ``per_type``, ``token_accuracy``.
        Scheme ``"none"``: ``token_accuracy``, ``per_tag`` and ``f1_macro`` (over the tags present, as
        scikit-learn). Micro aggregates count 0/0 as 0 (``zero_division=0``); a macro average over no labels and
        the token accuracy of sentences without tokens are None.
        """
        if self.n == 0:
            return {"n": 0}
        present = sorted(set(self.support) | set(self.predicted))
        per = {label: _prf(self.tp[label], self.predicted[label], self.support[label])
               for label in sorted(set(self.labels) | set(present))}
        macro = sum(per[label]["f1"] for label in present) / len(present) if present else None
        out: dict[str, Any] = {"n": self.n, "token_accuracy": self.correct / self.tokens if self.tokens else None}
        if self.scheme == NO_SCHEME:
            return {**out, "f1_macro": macro, "per_tag": per}
        total = _prf(sum(self.tp.values()), sum(self.predicted.values()), sum(self.support.values()))
        return {**out, "entity_f1": total["f1"] or 0.0, "entity_precision": total["precision"] or 0.0,
                "entity_recall": total["recall"] or 0.0, "entity_f1_macro": macro, "per_type": per}
