"""A request's inputs as the served run reads them: texts, sentence pairs, words, or base64 / uploaded media.

Every problem is an :class:`InputError` naming the input, answered with 422 before the request reaches the model.
Media come as bytes only (base64 in JSON, or multipart files): a server never opens paths its clients name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from typing import Any

from adapters_kit.data import media
from adapters_kit.errors import first_line
from adapters_kit.runs.pool import Served


class InputError(ValueError):
    """A request's inputs do not fit the adapter it names."""


def _text(served: Served, x: Any, i: int) -> tuple[Any, str]:
    if served.words:  # a text, or a sentence given as its words
        if isinstance(x, str) or (isinstance(x, list) and all(isinstance(w, str) for w in x)):
            return x, json.dumps(x)
        raise InputError(f"input {i}: adapter {served.name!r} tags words; give a text or a list of words")
    if served.parts.info.get("pair_column"):
        if isinstance(x, dict) and set(x) == {"text", "text_pair"}:
            x = [x["text"], x["text_pair"]]
        if isinstance(x, list) and len(x) == 2 and all(isinstance(t, str) for t in x):
            return tuple(x), json.dumps(x)
        raise InputError(f"input {i}: adapter {served.name!r} reads sentence pairs; give [text, text_pair] or "
                         f'{{"text": ..., "text_pair": ...}}')
    if isinstance(x, str):
        return x, x
    raise InputError(f"input {i}: adapter {served.name!r} reads texts; got {type(x).__name__}")


def _media(served: Served, data: bytes, i: int) -> tuple[Any, str]:
    """Decoded image (RGB) or waveform at the run's sampling rate, and a digest of the bytes."""
    kind = served.parts.modality.name
    try:
        if kind == "image":
            item = media.load_image(io.BytesIO(data))
        else:
            item = media.read_audio(io.BytesIO(data), served.parts.processor.sampling_rate)
    except media.UNREADABLE as e:
        raise InputError(f"input {i}: not a readable {kind} file ({first_line(e, 100)})") from None
    return item, hashlib.sha256(data).hexdigest()


def _base64(x: Any, i: int) -> bytes:
    if not isinstance(x, str):
        raise InputError(f"input {i}: give the file's bytes as a base64 string, got {type(x).__name__}")
    if x.startswith("data:") and "," in x:  # a data URL: data:image/png;base64,....
        x = x.split(",", 1)[1]
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"input {i}: not valid base64") from None


def parse(served: Served, inputs: Any, max_inputs: int) -> tuple[list, list[str]]:
    """JSON ``inputs`` -> (items the run's modality encodes, a key per item equal for equal inputs)."""
    if not isinstance(inputs, list) or not inputs:
        raise InputError("inputs must be a non-empty list")
    check_count(len(inputs), max_inputs)
    if served.parts.modality.name == "text":
        pairs = [_text(served, x, i) for i, x in enumerate(inputs)]
    else:
        pairs = [_media(served, _base64(x, i), i) for i, x in enumerate(inputs)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def parse_files(served: Served, files: list[bytes], max_inputs: int) -> tuple[list, list[str]]:
    """Uploaded files (multipart) -> items and keys; only image and audio runs take files."""
    if served.parts.modality.name == "text":
        raise InputError(f"adapter {served.name!r} reads texts; send JSON inputs, not files")
    if not files:
        raise InputError("no files uploaded; send one or more 'files' fields")
    check_count(len(files), max_inputs)
    pairs = [_media(served, data, i) for i, data in enumerate(files)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def check_count(n: int, max_inputs: int) -> None:
    if n > max_inputs:
        raise InputError(f"{n} inputs in one request; the limit is {max_inputs} (--max-inputs)")
