"""Token classification: a tag per word (NER with BIO / IOB2 / BIOES tags, part of speech, chunking).

Inputs are lists of words; the tokenizer splits them into sub-tokens, and the first sub-token of each word carries
the word's tag (the others are ignored by the loss and the metrics). The label of an example is a list of tag ids,
one per token position: the word's tag at its first sub-token, :data:`IGNORE` elsewhere; the tags of words cut off by
``max_length`` follow the tokens, coded ``TRUNCATED - id``, so they are scored as missed, never silently dropped.
Entity scores are seqeval's strict mode (:mod:`adapters_kit.evaluation.entities`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.evaluation.entities import NO_SCHEME, EntityMetrics, detect_scheme, get_entities
from adapters_kit.tasks.base import TASKS
from adapters_kit.tasks.labels import LabelMap, normalize_label, sort_label_names

IGNORE = -100
"""A token position without a tag of its own (special tokens, later sub-tokens of a word, padding)."""
TRUNCATED = -1000
"""Tag ids of words beyond ``max_length`` are stored as ``TRUNCATED - id``: scored, never trained on."""
OUTSIDE = "O"


def align_labels(word_ids: Sequence[int], word_labels: Sequence[int]) -> list[int]:
    """Word tags -> one label per token: the word's tag at its first sub-token, :data:`IGNORE` at special tokens
    (word id -1) and later sub-tokens, then ``TRUNCATED - tag`` for each word that got no token (cut off by
    ``max_length``), in word order."""
    out, seen = [], set()
    for w in word_ids:
        if w < 0 or w in seen:
            out.append(IGNORE)
        else:
            out.append(int(word_labels[w]))
            seen.add(w)
    return out + [TRUNCATED - int(t) for w, t in enumerate(word_labels) if w not in seen]


def _is_words(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(w, str) for w in value)


@TASKS.register("token-classification")
class TokenClassification:
    name = "token-classification"
    selectable = ("entity_f1", "entity_precision", "entity_recall", "entity_f1_macro", "token_accuracy", "f1_macro")
    lower_is_better = ()
    detect_order = -1  # before multi-label: lists of tags beside lists of words
    outputs_word = "tags"
    closed_form = False
    pooling = "tokens"
    word_inputs = True
    """Token states go to the head one by one, not pooled (:data:`adapters_kit.model.heads.POOLERS`)."""
    problem_type = "single_label_classification"
    hub_metrics = (("entity_f1", "f1", "Entity F1 (micro, strict)", None),
                   ("token_accuracy", "accuracy", "Token accuracy", None))
    card_use = ("Intended for tagging the words of {inputs} with the {n} tags above, on data like `{dataset}` "
                "({sizes}). The figures above hold only for that distribution: text of another domain, language "
                "or style still gets tags, often with high confidence.")

    def __init__(self, labels: LabelMap, cfg: TrainConfig):
        self.labels, self.cfg = labels, cfg
        self._lookup = {n: i for i, n in enumerate(labels.names)}
        self.scheme = labels.params.get("scheme") or detect_scheme(labels.names)
        entities = self.scheme != NO_SCHEME
        self.best_metric = "entity_f1" if entities else "token_accuracy"
        self.card_columns = (("entity_f1", "entity_precision", "entity_recall", "entity_f1_macro", "token_accuracy")
                             if entities else ("token_accuracy", "f1_macro"))

    @classmethod
    def claims(cls, values: list, inputs: list | None = None) -> bool:
        """Lists of tags beside lists of words of the same lengths (the first rows that have both)."""
        pairs = [(w, t) for w, t in zip(inputs or [], values) if _is_words(w) and isinstance(t, (list, tuple))]
        return bool(pairs) and all(len(w) == len(t) for w, t in pairs[:20])

    @classmethod
    def read(cls, values: list, column: str, where: str, cfg: TrainConfig, inputs: list | None = None) -> list:
        out = []
        for i, (tags, words) in enumerate(zip(values, inputs or [None] * len(values))):
            if tags is None:
                out.append(None)
                continue
            if not isinstance(tags, (list, tuple, np.ndarray)) or not _is_words(words):
                raise UserError(f"{where}: row {i + 1} is not a list of words with a list of tags (column "
                                f"{column!r}: {str(tags)[:40]}); token classification reads lists in JSON, JSON "
                                f"lines, Parquet or CoNLL files")
            if len(tags) != len(words):
                raise UserError(f"{where}: row {i + 1} has {len(words)} words but {len(tags)} tags in column "
                                f"{column!r}; give one tag per word")
            out.append(tuple(normalize_label(t) or OUTSIDE for t in tags))
        return out

    @classmethod
    def fit(cls, values: list, order: Sequence[str] | None, column: str) -> LabelMap:
        names = tuple(order) if order is not None else sort_label_names(t for v in values if v for t in v)
        try:
            scheme = detect_scheme(names)
        except ValueError as e:
            raise UserError(f"tag column {column!r}: {e}; use one tagging scheme (IOB2, BIOES, ...) or plain tags") \
                from None
        if len(names) < 2:
            raise UserError(f"tag column {column!r} has only one tag ({', '.join(names)}); tagging needs two or more")
        return LabelMap(names, {"scheme": scheme})

    def target(self, value: tuple[str, ...]) -> list[int] | None:
        """Word-level tag ids (the data layer aligns them to sub-tokens when it tokenises)."""
        if any(t not in self._lookup for t in value):
            return None
        return [self._lookup[t] for t in value]

    def unknown(self, value: tuple[str, ...]) -> list[str]:
        return [t for t in value if t not in self._lookup]

    def strata(self, targets: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[str]]:
        """Sentences with and without a tag other than ``O`` (for POS: all in one group)."""
        outside = self._lookup.get(OUTSIDE, -1)
        groups = np.asarray([int(any(t != outside for t in row)) for row in targets], dtype=np.int64)
        return groups, ["no entity", "entities"]

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def init_head(self, head: torch.nn.Module) -> None:
        """The head as built (seeded) is where training starts."""

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets[:, : outputs.shape[1]]
        targets = targets.where(targets >= 0, torch.full_like(targets, IGNORE))
        return F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def metrics(self, exported: bool = False) -> "_WordMetrics":
        return _WordMetrics(self)

    def word_tags(self, outputs: np.ndarray, targets: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
        """(reference tags, predicted tags) per sentence, one per word: the first sub-token's prediction; a word
        beyond ``max_length`` is predicted ``O`` (for untyped tags: a tag other than its own), so it counts as
        missed."""
        names = self.labels.names
        truth, pred = [], []
        for row_out, row in zip(outputs, targets):
            kept = np.flatnonzero(row >= 0)
            ids = row[kept].tolist()
            tags = [names[j] for j in row_out[kept].argmax(-1).tolist()]
            cut = [TRUNCATED - t for t in row[row <= TRUNCATED].tolist()]
            truth.append([names[j] for j in ids + cut])
            pred.append(tags + [self._missed(names[j]) for j in cut])
        return truth, pred

    def _missed(self, tag: str) -> str:
        if OUTSIDE in self._lookup:
            return OUTSIDE
        return next(n for n in self.labels.names if n != tag)

    def decode(self, outputs: torch.Tensor, top_k: int = 1, words: Sequence[Sequence[dict]] | None = None) -> list:
        """Per input: entities (``entity_group``, ``score``, ``word``, ``start``, ``end``, as transformers'
        ``pipeline("token-classification", aggregation_strategy="simple")``) or, for untyped tags, one
        ``{word, tag, score, start, end}`` per word. ``words``: per input, each word's text, character span and
        first sub-token position."""
        probs = outputs.float().softmax(-1)
        out = []
        for p, spans in zip(probs, words or []):
            scores, ids = p.max(-1)
            tags = [self.labels.names[ids[w["token"]]] if w["token"] is not None else self._missed("")
                    for w in spans]
            confidence = [float(scores[w["token"]]) if w["token"] is not None else 0.0 for w in spans]
            out.append(self._entities(tags, confidence, spans))
        return out

    def _entities(self, tags: list[str], confidence: list[float], spans: Sequence[dict]) -> list[dict]:
        if self.scheme == NO_SCHEME:
            return [{"word": w["word"], "tag": t, "score": c, "start": w["start"], "end": w["end"]}
                    for w, t, c in zip(spans, tags, confidence)]
        found = []
        for kind, start, end in get_entities(tags, self.scheme, "strict"):
            found.append({"entity_group": kind, "score": float(np.mean(confidence[start:end])),
                          "word": " ".join(w["word"] for w in spans[start:end]),
                          "start": spans[start]["start"], "end": spans[end - 1]["end"]})
        return found

    def exported(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

    def pipeline_tag(self, modality: str, pairs: bool = False) -> str:
        return "token-classification"


class _WordMetrics:
    """Entity (or per-tag) metrics of whole sentences, word by word, from token outputs and aligned targets."""

    def __init__(self, task: TokenClassification):
        self.task = task
        self.inner = EntityMetrics(task.labels.names, task.scheme, mode="strict")

    def update(self, outputs: np.ndarray, targets: np.ndarray) -> None:
        self.inner.update(*self.task.word_tags(outputs, targets))

    def compute(self) -> dict[str, Any]:
        return self.inner.compute()
