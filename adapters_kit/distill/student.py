"""A layer-pruned student: the teacher's own backbone, adapter merged, keeping some of its blocks (DistilBERT's
recipe: a student initialised from every other layer of its teacher).

The student's base is written once as an ordinary checkpoint folder (``config.json`` with the new depth, the kept
blocks' weights renumbered 0..N-1, the teacher's processor), found again by the next run from the same teacher and
blocks in ``$ADAPTERS_KIT_CACHE/students/<key>/``; the student's run folder carries a copy as ``base/``.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
from torch import nn

from adapters_kit.builtin.catalog import cache_root
from adapters_kit.errors import UserError
from adapters_kit.model.features import backbone_fingerprint
from adapters_kit.runs.atomic import atomic_dir
from adapters_kit.runs.checkpoint import LoadedRun

DEPTH_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers")
"""What model families' configs call their number of blocks (BERT / ViT / wav2vec2, GPT-2, T5-like, Whisper)."""
_BLOCKS = re.compile(r"^(.*?)\.(\d+)\.")


def blocks_of(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, module list) of the backbone's repeated blocks: the indexed container holding most of its weights
    (``encoder.layer`` of BERT, ``h`` of GPT-2)."""
    weight: Counter = Counter()
    for name, p in backbone.named_parameters():
        m = _BLOCKS.match(name)
        if m:
            weight[m.group(1)] += p.numel()
    for name, _ in weight.most_common(1):
        container = backbone.get_submodule(name)
        if isinstance(container, nn.ModuleList):
            return name, container
    raise UserError(f"{type(backbone).__name__} has no repeated blocks to keep some of; give the student as "
                    f"--student MODEL instead of --student-layers")


def depth_field(config) -> str:
    """The config field that holds the number of blocks."""
    found = next((f for f in DEPTH_FIELDS if isinstance(getattr(config, f, None), int)), None)
    if found is None:
        raise UserError(f"a {type(config).__name__} names no number of blocks ({', '.join(DEPTH_FIELDS)}), so a "
                        f"student cannot keep some of them; give the student as --student MODEL instead")
    return found


def layer_map(depth: int, keep: int | None, given: str | None) -> list[int]:
    """The teacher's blocks the student keeps: ``given`` (``0,2,4``), else ``keep`` evenly spaced over ``depth``
    with the first and the last kept (6 -> 3: 0, 2, 5)."""
    if given:
        try:
            chosen = [int(x) for x in given.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--student-layer-map {given!r} must be comma-separated block indices, e.g. 0,2,4") \
                from None
        if not chosen or sorted(set(chosen)) != chosen or chosen[0] < 0 or chosen[-1] >= depth:
            raise UserError(f"--student-layer-map {given!r} must list distinct increasing block indices in "
                            f"0..{depth - 1} (the teacher has {depth} blocks)")
        if keep is not None and keep != len(chosen):
            raise UserError(f"--student-layers {keep} disagrees with --student-layer-map {given!r} "
                            f"({len(chosen)} blocks); give one of them")
        return chosen
    if keep is None or not 1 <= keep <= depth:
        raise UserError(f"--student-layers must be in 1..{depth} (the teacher's {depth} blocks), got {keep}")
    return sorted({int(round(x)) for x in np.linspace(0, depth - 1, keep)})


def teacher_depth(teacher: LoadedRun) -> int:
    backbone = teacher.model.backbone
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    return len(blocks_of(base)[1])


def merged_backbone(teacher: LoadedRun) -> nn.Module:
    """A copy of the teacher's backbone with its adapter merged into the weights (the teacher is untouched)."""
    backbone = copy.deepcopy(teacher.model.backbone)
    return backbone.merge_and_unload() if hasattr(backbone, "merge_and_unload") else backbone


def prune(backbone: nn.Module, keep: list[int]) -> nn.Module:
    """``backbone`` keeping only the blocks ``keep`` (in place; their weights untouched), its config saying so."""
    name, blocks = blocks_of(backbone)
    parent, _, attr = name.rpartition(".")
    setattr(backbone.get_submodule(parent) if parent else backbone, attr, nn.ModuleList(blocks[i] for i in keep))
    config = backbone.config
    depth = getattr(config, depth_field(config))
    for key, value in list(vars(config).items()):  # per-block settings (e.g. ``layer_types``) follow the blocks
        if isinstance(value, list) and len(value) == depth:
            setattr(config, key, [value[i] for i in keep])
    setattr(config, depth_field(config), len(keep))
    for i, block in enumerate(backbone.get_submodule(name)):  # attention layers that know their own index
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = i
    return backbone


def student_base(teacher: LoadedRun, keep: list[int], key: str | None = None) -> Path:
    """The folder of the pruned student's base checkpoint (written once per teacher and block choice). ``key``: a
    fingerprint of the teacher's weights (``distill.teacher.teacher_key``) when the caller has one already."""
    key = hashlib.sha256(((key or backbone_fingerprint(teacher.model)) + repr(keep)).encode()).hexdigest()[:32]
    path = cache_root() / "students" / key
    if not (path / "config.json").is_file():
        with atomic_dir(path) as tmp:
            prune(merged_backbone(teacher), keep).save_pretrained(str(tmp))
            teacher.processor.save_pretrained(str(tmp))
    return path
