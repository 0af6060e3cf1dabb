"""A saved run becomes a callable classifier with the call shape of a transformers ``pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from adapters_kit.errors import UserError
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
    def logits(self, inputs: str | Sequence[Any]) -> torch.Tensor:
        """Raw head outputs, shape (len(inputs), outputs): logits (a regression's standardised values)."""
        items = self._items(inputs)
        out = []
        for i in range(0, len(items), self.batch_size):
            enc = self.run.modality.encode(self.run.processor, items[i:i + self.batch_size])
            batch = self.collate([dict(zip(enc.keys(), row)) for row in zip(*enc.values())])
            out.append(self.model(**batch))
        return torch.cat(out) if out else torch.empty(0, len(self.labels))

    def __call__(self, inputs: str | Sequence[Any], top_k: int = 1) -> list:
        return self.task.decode(self.logits(inputs), top_k)


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
