"""A saved run becomes a callable classifier with the call shape of a transformers ``pipeline``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from adapters_kit.errors import UserError
from adapters_kit.modalities import encoded_rows
from adapters_kit.runs.checkpoint import LoadedRun, is_hub_id, load_run


class Classifier:
    """``clf(inputs)`` -> one prediction per input, as the run's task decodes it: ``{"label", "score"}`` for
    classification (a list of ``top_k`` such dicts when ``top_k`` > 1), like ``pipeline("text-classification")``
    / ``"image-classification"`` / ``"audio-classification"``; the list of predicted ``{"label", "score"}`` for
    multi-label; ``{"score": value}`` for regression. Inputs are texts, or image / audio file paths (also PIL
    images and 1-D waveforms at the extractor's sampling rate); a sentence-pair run takes ``(text, text_pair)``
    tuples or ``{"text", "text_pair"}`` dicts, as transformers' text-classification pipeline does.

    >>> clf = load("runs/bbc")                                        # doctest: +SKIP
    >>> clf("Shares rose sharply after the results")                  # doctest: +SKIP
    [{'label': 'business', 'score': 0.98}]
    """

    def __init__(self, run: LoadedRun, batch_size: int = 32):
        self.run = run
        self.model = run.model.eval()
        self.labels = list(run.labels.names)
        self.batch_size = batch_size
        self.collate = run.modality.collator(run.processor)
        self.task = run.task()

    @property
    def config(self):
        return self.run.cfg

    def _items(self, inputs: Any) -> list:
        """One input or a sequence of them -> a list of inputs (a sentence pair as a tuple of its two texts)."""
        if self.task.word_inputs:  # a text, a batch of texts, or a batch of sentences given as lists of words
            items = [inputs] if isinstance(inputs, str) else list(inputs)
            bad = next((x for x in items if not (isinstance(x, str) or _is_words(x))), None)
            if bad is not None:
                raise UserError(f"this run tags words: give texts, or sentences as lists of words, not "
                                f"{str(bad)[:40]!r}")
            return items
        if self.run.pairs:
            pair = isinstance(inputs, dict) or (isinstance(inputs, tuple) and len(inputs) == 2
                                                and all(isinstance(t, str) for t in inputs))
            items = [inputs] if pair else list(inputs)
            bad = next((x for x in items if not _is_pair(x)), None)
            if bad is not None:
                raise UserError(f"this run reads sentence pairs: give (text, text_pair) tuples or "
                                f"{{'text': ..., 'text_pair': ...}} dicts, not {str(bad)[:40]!r}")
            return [(x["text"], x["text_pair"]) if isinstance(x, dict) else tuple(x) for x in items]
        if isinstance(inputs, (tuple, dict)) or (isinstance(inputs, list) and inputs and _is_pair(inputs[0])):
            raise UserError("this run reads one input per example, not sentence pairs; pass texts")
        single = isinstance(inputs, (str, Image.Image)) or (isinstance(inputs, np.ndarray) and inputs.ndim == 1)
        return [inputs] if single else list(inputs)

    @torch.inference_mode()
    def logits(self, inputs: str | Sequence[Any]) -> torch.Tensor | list[torch.Tensor]:
        """Raw head outputs, shape (len(inputs), outputs): logits (a regression's standardised values); for a
        token-classification run a list with one (tokens, tags) tensor per input."""
        if self.task.word_inputs:
            return [logits for _, logits in self._tagged(self._items(inputs))]
        items = self._items(inputs)
        out = []
        for i in range(0, len(items), self.batch_size):
            enc = self.run.modality.encode(self.run.processor, items[i:i + self.batch_size])
            out.append(self.model(**self._collated(enc)))
        return torch.cat(out) if out else torch.empty(0, len(self.labels))

    def _collated(self, enc: dict) -> dict[str, torch.Tensor]:
        return self.collate(encoded_rows(enc))

    @torch.inference_mode()
    def _tagged(self, items: list) -> list[tuple[list[dict], torch.Tensor]]:
        """Per input: its words (text, character span, first sub-token position or None when cut off by
        ``max_length``) and its tokens' logits."""
        out = []
        for i in range(0, len(items), self.batch_size):
            spans = [_words(x, self.run.processor) for x in items[i:i + self.batch_size]]
            enc = dict(self.run.modality.encode(self.run.processor, [[w["word"] for w in s] for s in spans]))
            word_ids = enc.pop("word_ids")
            logits = self.model(**self._collated(enc))
            for s, ids, row in zip(spans, word_ids, logits):
                first = {}
                for position, w in enumerate(ids):
                    first.setdefault(w, position)
                for j, word in enumerate(s):
                    word["token"] = first.get(j)
                out.append((s, row[: len(ids)]))
        return out

    def __call__(self, inputs: str | Sequence[Any], top_k: int = 1) -> list:
        if self.task.word_inputs:
            tagged = self._tagged(self._items(inputs))
            return [self.task.decode(row[None], words=[spans])[0] for spans, row in tagged]
        return self.task.decode(self.logits(inputs), top_k)


def _is_words(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(w, str) for w in x)


def _words(item: str | Sequence[str], processor: Any) -> list[dict]:
    """``[{"word", "start", "end"}]``: a text split the way the tokenizer's pre-tokenizer splits it (with
    character offsets into the text), or given words (offsets into the words joined by single spaces)."""
    if isinstance(item, str):
        pre = getattr(getattr(processor, "backend_tokenizer", None), "pre_tokenizer", None)
        pieces = pre.pre_tokenize_str(item) if pre is not None else [(m.group(), m.span())
                                                                      for m in re.finditer(r"\S+", item)]
        return [{"word": w, "start": s, "end": e} for w, (s, e) in pieces]
    spans, pos = [], 0
    for w in item:
        spans.append({"word": w, "start": pos, "end": pos + len(w)})
        pos += len(w) + 1
    return spans


def _is_pair(x: Any) -> bool:
    if isinstance(x, dict):
        return set(x) == {"text", "text_pair"} and all(isinstance(v, str) for v in x.values())
    return isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(t, str) for t in x)


def load(directory_or_repo: str | Path, batch_size: int = 32, *, revision: str | None = None,
         token: str | None = None, base_model: str | None = None) -> Classifier:
    """Load a run folder, or a run pushed to the Hub (``user/name``, fetched into the Hugging Face cache), into a
    ready :class:`Classifier` (CPU, eval mode). ``base_model`` overrides where the backbone comes from."""
    directory = directory_or_repo
    if is_hub_id(str(directory_or_repo)):
        from adapters_kit.share.hub import download_run

        directory = download_run(str(directory_or_repo), revision=revision, token=token)
    return Classifier(load_run(directory, base_model=base_model), batch_size=batch_size)
