"""Modality strategies: how raw inputs of one kind become model inputs.

A modality owns the processor (tokenizer, image processor, feature extractor), the backbone class, the per-example
preprocessing, batch collation and the default pooling. Text is the first; vision and audio register beside it.
"""

from __future__ import annotations

from typing import Any, Protocol

from transformers import AutoModel, AutoTokenizer, DataCollatorWithPadding

from adapters_kit.errors import UserError
from adapters_kit.registry import Registry


class Modality(Protocol):
    name: str
    input_columns: tuple[str, ...]
    """Column names tried, in order, when the user does not name the input column."""
    default_pooling: str
    backbone_class: Any

    def load_processor(self, model_path: str) -> Any: ...

    def preprocess(self, processor: Any, batch: dict[str, list], column: str, max_length: int) -> dict: ...

    def collator(self, processor: Any) -> Any: ...


MODALITIES: Registry[Modality] = Registry("modality")


@MODALITIES.register("text")
class TextModality:
    name = "text"
    input_columns = ("text", "sentence", "content", "document", "body", "message", "review", "review_text",
                     "sms", "article", "question", "tweet")
    default_pooling = "mean"
    backbone_class = AutoModel

    def load_processor(self, model_path: str) -> Any:
        tok = AutoTokenizer.from_pretrained(model_path)
        if tok.pad_token is None:  # decoder LMs ship without one; pooling masks it out anyway
            tok.pad_token = tok.eos_token
        return tok

    def preprocess(self, processor: Any, batch: dict[str, list], column: str, max_length: int) -> dict:
        texts = batch[column]
        bad = next((t for t in texts if not isinstance(t, str)), "ok")
        if bad != "ok":
            raise UserError(f"text column {column!r} holds a non-text value {bad!r}; clean the data or pick "
                            f"another column with --text-column")
        # No padding here: batches are padded to their own longest text by the collator.
        return processor(texts, truncation=True, max_length=max_length)

    def collator(self, processor: Any) -> Any:
        return DataCollatorWithPadding(processor, return_tensors="pt")


def get_modality(name: str) -> Modality:
    return MODALITIES.get(name)()
