"""A saved run becomes a callable classifier with the call shape of a transformers ``pipeline``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from adapters_kit.runs.checkpoint import LoadedRun, is_hub_id, load_run
from adapters_kit.tasks import get_task


class Classifier:
    """``clf(inputs)`` -> ``[{"label": str, "score": float}, ...]``, one dict per input (a list of ``top_k``
    dicts per input when ``top_k`` > 1), like ``pipeline("text-classification")`` / ``"image-classification"`` /
    ``"audio-classification"``. Inputs are texts, or image / audio file paths (also PIL images and 1-D waveforms
    at the extractor's sampling rate).

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
        self.task = get_task()

    @property
    def config(self):
        return self.run.cfg

    @torch.inference_mode()
    def logits(self, inputs: str | Sequence[Any]) -> torch.Tensor:
        """Raw logits, shape (len(inputs), num_labels)."""
        single = isinstance(inputs, (str, Image.Image)) or (isinstance(inputs, np.ndarray) and inputs.ndim == 1)
        items = [inputs] if single else list(inputs)
        out = []
        for i in range(0, len(items), self.batch_size):
            enc = self.run.modality.encode(self.run.processor, items[i:i + self.batch_size])
            batch = self.collate([dict(zip(enc.keys(), row)) for row in zip(*enc.values())])
            out.append(self.model(**batch))
        return torch.cat(out) if out else torch.empty(0, len(self.labels))

    def __call__(self, inputs: str | Sequence[Any], top_k: int = 1) -> list:
        return self.task.decode(self.logits(inputs), self.labels, top_k)


def load(directory_or_repo: str | Path, batch_size: int = 32, *, revision: str | None = None,
         token: str | None = None, base_model: str | None = None) -> Classifier:
    """Load a run folder, or a run pushed to the Hub (``user/name``, fetched into the Hugging Face cache), into a
    ready :class:`Classifier` (CPU, eval mode). ``base_model`` overrides where the backbone comes from."""
    directory = directory_or_repo
    if is_hub_id(str(directory_or_repo)):
        from adapters_kit.share.hub import download_run

        directory = download_run(str(directory_or_repo), revision=revision, token=token)
    return Classifier(load_run(directory, base_model=base_model), batch_size=batch_size)
