"""Many run folders in memory over shared base models, answering mixed batches of requests.

Runs whose base model is the same (the same resolved checkpoint folder, modality and processor settings) share one
backbone: PEFT adapters sit side by side on one ``PeftModel`` under their names, probes use its plain forward (with
the adapters switched off), and each run keeps its own pooling and head. A run that changed the backbone's own
weights (full fine-tuning, unfrozen top blocks, a distilled student's pruned base) gets a backbone of its own.

A batch of requests for several runs is answered with as few backbone passes as possible: rows that read the same
tokens the same way go through one pass, LoRA adapters of one base together through PEFT's mixed-batch forward
(``adapter_names``), and an input asked of several probes of one base is computed once.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from torch import nn

from adapters_kit.errors import UserError
from adapters_kit.modalities import encoded_rows
from adapters_kit.runs.checkpoint import LoadedRun, RunParts, read_run
from adapters_kit.runs.inference import Classifier

BASE = "__base__"
"""PEFT's name for "no adapter" in a mixed batch; here also the identity of every run that adds no PEFT adapter."""
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PADDING_SLACK = 1.25
"""A backbone pass pads its texts to at most this many times their real tokens (texts are sorted by length)."""


class AdapterExists(UserError):
    """A run was to be loaded under a name already in use."""


class UnknownAdapter(KeyError):
    """A request named an adapter that is not loaded."""

    def __str__(self) -> str:
        return f"no adapter named {self.args[0]!r} is loaded; GET /v1/adapters lists them"


@dataclass
class Backbone:
    """One base model in memory and the names of the runs that use it."""

    key: tuple
    module: nn.Module
    """The plain backbone, or the ``PeftModel`` around it once a PEFT adapter joined."""
    peft_type: str | None = None
    shared: bool = True
    """False for a backbone whose weights belong to one run (full fine-tuning): no other run may join it."""
    users: set[str] = field(default_factory=set)

    def using(self, identity: str):
        """A context in which a plain forward of ``module`` runs adapter ``identity`` (``BASE``: none)."""
        if not isinstance(self.module, PeftModel):
            return nullcontext()
        if identity == BASE:
            return self.module.disable_adapter()
        self.module.set_adapter(identity)
        return nullcontext()

    def mixes(self, dora: bool) -> bool:
        """Whether one forward can serve rows of different adapters (PEFT's ``adapter_names``: LoRA, not DoRA)."""
        return self.peft_type == "LORA" and not dora


@dataclass
class Served:
    """One loaded run: its files, the backbone it uses and how it reads inputs."""

    name: str
    parts: RunParts
    backbone: Backbone
    identity: str
    """The run's PEFT adapter name on its backbone, or ``BASE``."""
    model: nn.Module
    """The run's classifier (its pooling and head) over the shared backbone."""
    dora: bool = False
    encoding: tuple = ()
    """Runs with equal encodings on one backbone tokenize an input identically, so one pass answers them."""
    task: Any = None
    """The run's task bound to its labels: decodes logits into answers."""

    @property
    def words(self) -> bool:
        """Whether the run tags words (token classification), which is answered per request."""
        return self.task.word_inputs

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/adapters`` lists."""
        cfg, info = self.parts.cfg, self.parts.info
        return {"name": self.name, "task": self.task.name, "modality": self.parts.modality.name,
                "labels": list(self.parts.labels.names), "method": cfg.method, "base_model": cfg.model,
                "sentence_pairs": bool(info.get("pair_column")),
                "trainable_parameters": info.get("trainable_parameters"), "shares_backbone_with":
                sorted(set(self.backbone.users) - {self.name})}


@dataclass
class Request:
    """One prediction request: an adapter's name, its inputs (already decoded), and optionally a key per input,
    equal for equal inputs, under which an input asked of several probes of one base is computed once."""

    adapter: str
    items: list
    keys: list[str] | None = None
    top_k: int = 1


class Pool:
    """The loaded runs by name. Not thread-safe: call it from one thread (a server's model worker)."""

    def __init__(self, max_batch_size: int = 32):
        self.served: dict[str, Served] = {}
        self.backbones: list[Backbone] = []
        self.max_batch_size = max_batch_size

    def get(self, name: str) -> Served:
        if name not in self.served:
            raise UnknownAdapter(name)
        return self.served[name]

    def load(self, directory: str | Path, name: str | None = None) -> Served:
        """Load a run folder under ``name`` (default: the folder's name, with characters other than letters,
        digits, ``_`` and ``-`` made ``-``) onto a backbone it can share."""
        root = Path(directory)
        if name is None:
            name = re.sub(r"[^A-Za-z0-9_-]", "-", root.resolve().name)[:64] or "run"
        if not NAME.fullmatch(name) or name == BASE:
            raise UserError(f"adapter name {name!r} is not allowed; use 1-64 letters, digits, _ or -")
        if name in self.served:
            raise AdapterExists(f"an adapter named {name!r} is already loaded; unload it first or pick another name")
        parts = read_run(root)
        adapter = parts.adapter()
        key = (os.path.realpath(parts.base), parts.modality.name, parts.modality.signature(parts.processor))
        try:
            with parts.mismatch():
                if adapter.peft:
                    backbone, identity, dora = self._attach_peft(parts, key, name)
                elif adapter.frozen_backbone:  # a probe: the base model's own forward
                    backbone, identity, dora = self._backbone(parts, key, lambda b: True), BASE, False
                else:  # weights of its own
                    module = adapter.load(parts.load_backbone(), str(root))
                    backbone, identity, dora = Backbone(key + (name,), module.eval(), shared=False), BASE, False
                    self.backbones.append(backbone)
                model = parts.build(backbone.module)
        except BaseException:
            self.backbones = [b for b in self.backbones if b.users]  # one loaded for this run alone goes again
            raise
        backbone.users.add(name)
        self._sync(backbone)
        served = Served(name, parts, backbone, identity, model, dora, encoding(parts), parts.task())
        self.served[name] = served
        return served

    def _backbone(self, parts: RunParts, key: tuple, fits) -> Backbone:
        """A shared backbone with ``key`` that ``fits``, or a new one."""
        found = next((b for b in self.backbones if b.shared and b.key == key and fits(b)), None)
        if found is None:
            found = Backbone(key, parts.load_backbone().eval())
            self.backbones.append(found)
        return found

    def _attach_peft(self, parts: RunParts, key: tuple, name: str) -> tuple[Backbone, str, bool]:
        """Put the run's PEFT adapter on a backbone of the same base that holds no adapters or adapters of the same
        PEFT type (one ``PeftModel`` holds one type)."""
        config = json.loads((parts.root / "adapter_config.json").read_text())
        peft_type = config.get("peft_type")
        backbone = self._backbone(parts, key, lambda b: b.peft_type in (None, peft_type))
        if backbone.peft_type is None:
            backbone.module = PeftModel.from_pretrained(backbone.module, str(parts.root), adapter_name=name).eval()
            backbone.peft_type = peft_type
        else:
            backbone.module.load_adapter(str(parts.root), adapter_name=name)
            backbone.module.eval()
        return backbone, name, bool(config.get("use_dora"))

    def unload(self, name: str) -> None:
        """Drop a run; its backbone goes too once no run uses it."""
        served = self.get(name)
        del self.served[name]
        backbone = served.backbone
        backbone.users.discard(name)
        if served.identity != BASE:
            if any(self.served[user].identity != BASE for user in backbone.users):
                backbone.module.delete_adapter(name)
            else:  # its last PEFT adapter: back to the plain model (probes may still use it)
                backbone.module, backbone.peft_type = backbone.module.unload().eval(), None
        self._sync(backbone)
        if not backbone.users:
            self.backbones.remove(backbone)
        gc.collect()

    def _sync(self, backbone: Backbone) -> None:
        """Point every run on ``backbone`` at its current module (wrapped in, or unwrapped from, a ``PeftModel``)."""
        for user in backbone.users & self.served.keys():
            self.served[user].model.backbone = backbone.module

    @torch.inference_mode()
    def predict(self, requests: list[Request]) -> list[Any]:
        """Per request: what ``load(run)(items, top_k)`` answers, or the exception that request met."""
        results: list[Any] = [None] * len(requests)
        rows = []  # (request, position, served, item, key)
        for i, request in enumerate(requests):
            try:
                served = self.get(request.adapter)
                if served.words:
                    results[i] = self._tag(served, request)
                    continue
            except Exception as e:  # noqa: BLE001 - one request's failure is that request's answer
                results[i] = e
                continue
            keys = request.keys or [(i, j) for j in range(len(request.items))]  # no keys: a tuple, equal to no str
            rows += [(i, j, served, item, key) for j, (item, key) in enumerate(zip(request.items, keys))]
        logits: dict[tuple[int, int], torch.Tensor] = {}
        groups: dict[tuple, list] = {}
        for row in rows:
            groups.setdefault((id(row[2].backbone), row[2].encoding), []).append(row)
        for group in groups.values():
            try:
                logits.update(self._score(group))
            except Exception as e:  # noqa: BLE001
                for i in {row[0] for row in group}:
                    results[i] = e
        for i, request in enumerate(requests):
            if results[i] is None:
                served = self.served[request.adapter]
                stacked = torch.stack([logits[(i, j)] for j in range(len(request.items))])
                results[i] = served.task.decode(stacked, request.top_k)
        return results

    def _tag(self, served: Served, request: Request) -> list:
        """Token classification, per request through the run's own :class:`Classifier` on the shared backbone."""
        run = LoadedRun(served.model, served.parts.processor, served.parts.cfg, served.parts.labels,
                        served.parts.info, served.parts.modality)
        with served.backbone.using(served.identity):
            return Classifier(run, batch_size=self.max_batch_size)(request.items)

    def _score(self, group: list) -> dict[tuple[int, int], torch.Tensor]:
        """Logits of rows that share a backbone and an encoding: each distinct (adapter, input) runs once."""
        backbone, first = group[0][2].backbone, group[0][2]
        unique: dict[tuple[str, str], int] = {}
        entries = []  # (identity, item)
        for _, _, served, item, key in group:
            if (served.identity, key) not in unique:
                unique[(served.identity, key)] = len(entries)
                entries.append((served.identity, item))
        modality, processor = first.parts.modality, first.parts.processor
        enc = modality.encode(processor, [item for _, item in entries])
        encoded = encoded_rows(enc)
        located = {}  # entry -> (pass output, mask, row in the pass)
        collate = modality.collator(processor)
        for chunk in self._passes(encoded, [identity for identity, _ in entries],
                                  backbone.mixes(any(row[2].dora for row in group))):
            inputs = collate([encoded[e] for e in chunk])
            identities = [entries[e][0] for e in chunk]
            if len(set(identities)) == 1:
                with backbone.using(identities[0]):
                    out = backbone.module(**inputs)
            else:
                out = backbone.module(**inputs, adapter_names=identities)
            located.update({e: (out, inputs.get("attention_mask"), r) for r, e in enumerate(chunk)})
        answers, pooled = {}, {}
        for i, j, served, _, key in group:
            out, mask, r = located[unique[(served.identity, key)]]
            cache = (id(out), served.name)
            if cache not in pooled:
                pooled[cache] = served.model.pooled(out, mask)
            answers[(i, j)] = served.model.head(pooled[cache][r:r + 1])[0]
        return answers

    def _passes(self, encoded: list[dict], identities: list[str], mixes: bool) -> list[list[int]]:
        """Entries cut into backbone passes: at most ``max_batch_size`` each, one adapter per pass unless the
        backbone ``mixes`` adapters, and texts ordered by length so that a pass pads little: a pass closes when
        padding to its longest text would make it more than ``PADDING_SLACK`` times its real tokens."""
        lengths = [len(e["input_ids"]) if "input_ids" in e else 1 for e in encoded]
        order = sorted(range(len(encoded)), key=lambda e: ("" if mixes else identities[e], lengths[e]))
        passes, current, tokens = [], [], 0
        for e in order:
            longest = max(lengths[e], max((lengths[c] for c in current), default=0))
            if current and (len(current) == self.max_batch_size or (not mixes and identities[current[0]] !=
                                                                    identities[e])
                            or longest * (len(current) + 1) > PADDING_SLACK * (tokens + lengths[e])):
                passes.append(current)
                current, tokens = [], 0
            current.append(e)
            tokens += lengths[e]
        passes.append(current)
        return passes


def encoding(parts: RunParts) -> tuple:
    """What decides how a run turns an input into tensors: modality, sequence length, pairs or not, and the
    processor itself (its tokenizer's full definition, or the image / audio extractor's settings)."""
    processor = parts.processor
    backend = getattr(processor, "backend_tokenizer", None)
    if backend is not None:
        spec = backend.to_str()
    else:
        spec = parts.modality.signature(processor) or repr(processor)
    digest = hashlib.sha256(spec.encode()).hexdigest()
    return (parts.modality.name, parts.cfg.max_length, bool(parts.info.get("pair_column")), digest)
