"""A teacher run's outputs on a student's training inputs: computed once per teacher and data, then read from a cache.

The teacher reads the inputs its own way (its processor, ``max_length``, pair encoding), in eval mode, so a student
of another family (another tokenizer) learns from exactly what the teacher predicts. The cache key hashes the
teacher's weights (backbone, adapter and head) and pooling with the preprocessed inputs' content; entries live in
``$ADAPTERS_KIT_CACHE/teacher/<key>/`` (delete the folder to clear it).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from adapters_kit.builtin.catalog import cache_root
from adapters_kit.data.splits import make_loader, prepare
from adapters_kit.model.features import backbone_fingerprint, split_fingerprint
from adapters_kit.runs.atomic import atomic_dir
from adapters_kit.runs.checkpoint import LoadedRun

log = logging.getLogger(__name__)
OUTPUTS = "outputs.safetensors"


def teacher_key(teacher: LoadedRun) -> str:
    """sha256 of the teacher's backbone (adapter included), pooling and head weights."""
    h = hashlib.sha256(backbone_fingerprint(teacher.model).encode())
    for name, tensor in sorted(teacher.model.head.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def run_teacher(teacher: LoadedRun, prepared: Any, batch_size: int) -> torch.Tensor:
    """The teacher's head outputs for every row of ``prepared`` (its own model inputs), in row order."""
    model = teacher.model.eval()
    device = next(model.parameters()).device
    loader = make_loader(prepared, teacher.modality.collator(teacher.processor), batch_size, shuffle=False)
    outputs = []
    for batch in loader:
        batch.pop("labels", None)
        outputs.append(model(**{k: v.to(device) for k, v in batch.items()}).float().cpu())
    return torch.cat(outputs)


def teacher_outputs(teacher: LoadedRun, inputs: Any, batch_size: int = 64,
                    key: str | None = None) -> tuple[torch.Tensor, bool]:
    """(the teacher's outputs for each row of ``inputs``, a data set whose ``input`` column holds raw inputs;
    whether they came from the cache). No other column is read. ``key``: :func:`teacher_key` of the teacher, when
    the caller has it already."""
    prepared = prepare(inputs.select_columns(["input"]), teacher.modality, teacher.processor)
    key = hashlib.sha256(((key or teacher_key(teacher)) + split_fingerprint(prepared)).encode()).hexdigest()[:32]
    path = cache_root() / "teacher" / key
    if (path / OUTPUTS).is_file():
        try:
            return load_file(str(path / OUTPUTS))["outputs"], True
        except (OSError, KeyError, ValueError) as e:  # a damaged entry is rebuilt, not trusted
            log.warning("teacher cache entry %s unreadable (%s); running the teacher again", path, e)
    outputs = run_teacher(teacher, prepared, batch_size)
    with atomic_dir(path) as tmp:
        save_file({"outputs": outputs.contiguous()}, str(tmp / OUTPUTS))
    return outputs, False
