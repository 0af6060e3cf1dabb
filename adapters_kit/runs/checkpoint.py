"""Local run folders: save (atomically) and load adapter + head + labels + processor + config + metrics.

A run folder is complete or absent: everything, report and card included, is written into a hidden temporary
sibling that takes the folder's name in one step at the end (:mod:`adapters_kit.runs.atomic`), so an interrupted run
never leaves a folder that looks finished. Which folders may be written at all is :mod:`adapters_kit.runs.output`'s
rule. Loading checks every file before it is used and names the damaged one in a single line.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from adapters_kit.builtin.catalog import MODELS
from adapters_kit.config import TrainConfig, from_dict, save_config
from adapters_kit.data.splits import LabelMap, normalize_label
from adapters_kit.errors import UserError, first_line
from adapters_kit.methods import get_recipe
from adapters_kit.modalities import get_modality
from adapters_kit.model.heads import build_head
from adapters_kit.model.modeling import AdapterClassifier, feature_dim
from adapters_kit.runs.atomic import atomic_dir, write_json, write_text
from adapters_kit.runs.output import MANIFEST_KEY, RUN, RUN_INFO, RUN_MARKER, claim, remove_partial
from adapters_kit.tasks import Task, get_task
from adapters_kit.tasks.base import DEFAULT_TASK
from adapters_kit.train.resume import STATE, list_checkpoints

FORMAT_VERSION = 1


def check_output(directory: str | Path, overwrite: bool, resume: bool = False, resume_from: str | None = None,
                 inputs: list[Path] | tuple = ()) -> Path | None:
    """Check the output folder before any work (:func:`adapters_kit.runs.output.claim`); returns the checkpoint to
    resume from, if any. ``inputs``: local paths the run reads, which the folder must not hold."""
    path = Path(directory)
    found = claim(path, RUN, overwrite=overwrite, resume=resume, continuing=resume_from is not None,
                  inputs=inputs)
    if resume_from is not None:
        if not (Path(resume_from) / STATE).exists():
            raise UserError(f"--resume-from {resume_from} is not a complete checkpoint folder (no {STATE}); "
                            f"give one of the run's checkpoint-* folders")
        return Path(resume_from)
    if resume:
        # The main stage's newest, else (a run stopped in a recipe's pre-stage) that stage's newest.
        found = list_checkpoints(path) or list_checkpoints(path, None)
        if not found:
            raise UserError(f"--output {path} holds no complete checkpoint; run again without --resume")
        return found[-1]
    if found.state == "unfinished":  # starting again: an earlier run's checkpoints must not mix with this one's
        remove_partial(path, RUN)
    elif found.state == "finished":  # the old run stays until the new one replaces it, but not its checkpoints
        for old in list_checkpoints(path) + list_checkpoints(path, None):
            shutil.rmtree(old)
    shutil.rmtree(tracker_dir(path), ignore_errors=True)  # nor its tracker logs
    return None


def tracker_dir(output: str | Path) -> Path:
    """Where ``--report-to`` trackers write while a run trains: a hidden sibling of the run folder (so an
    unfinished run's folder holds only checkpoints); ``save_run`` moves it into the run as ``logs/``."""
    final = Path(output).resolve()
    return final.parent / f".{final.name}.logs"


def link_tree(src: Path, dst: Path) -> None:
    """``src`` into ``dst`` as hard links (no copy of the bytes; the originals stay until the swap)."""
    try:
        shutil.copytree(src, dst, copy_function=os.link)
    except OSError:  # a file system without hard links
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)


def save_run(directory: str | Path, *, model: AdapterClassifier, processor: Any, cfg: TrainConfig,
             labels: LabelMap, metrics: dict[str, Any], info: dict[str, Any], log: list[dict],
             state: dict[str, Any] | None = None, finish: Callable[[Path], Any] | None = None) -> Path:
    """Write a complete run folder; returns its path. ``state``: the whole model's state dict as
    ``Accelerator.get_state_dict`` gathers it (full tensors under FSDP / ZeRO-3); default: the module's own.
    ``finish(folder)`` writes further files (report, card) into the folder before it takes its name."""
    state = state if state is not None else model.state_dict()
    check_gathered(state)
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    with atomic_dir(directory) as tmp:
        get_recipe(cfg.method).adapter(cfg).save(model.backbone, str(tmp), backbone_state)
        complete_adapter_config(tmp, cfg.model)
        save_file({k: v.detach().cpu().contiguous() for k, v in head_state.items()}, str(tmp / "head.safetensors"))
        processor.save_pretrained(str(tmp))
        save_config(cfg, tmp / RUN_MARKER)
        write_json(tmp / "labels.json", {"id2label": {str(i): n for i, n in labels.id2label.items()},
                                         "label2id": labels.label2id, "params": labels.params})
        write_json(tmp / RUN_INFO, {"format_version": FORMAT_VERSION, **info})
        write_json(tmp / "metrics.json", metrics)
        write_text(tmp / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
        check_weights_saved(tmp)
        if finish is not None:
            finish(tmp)
        # The checkpoints the loop kept and the tracker files join the run as hard links: until the swap below,
        # the originals stay where --resume finds them.
        for kept in list_checkpoints(directory):
            link_tree(kept, tmp / kept.name)
        if tracker_dir(directory).is_dir():  # tensorboard / wandb files of --report-to
            link_tree(tracker_dir(directory), tmp / "logs")
        write_json(tmp / RUN_INFO, {"format_version": FORMAT_VERSION, **info,
                                    MANIFEST_KEY: sorted(os.listdir(tmp))})  # run_info.json among them
    shutil.rmtree(tracker_dir(directory), ignore_errors=True)
    return Path(directory)


def complete_adapter_config(folder: Path, model: str) -> None:
    """Complete PEFT's ``adapter_config.json`` (if the run has one) for PEFT's own loaders on other machines.

    A backbone given as a Hub id trains from its cached snapshot folder; the file names the id instead (what
    ``AutoPeftModel`` and the Hub resolve on any machine), not this machine's cache path. (``share.hub`` calls this
    again at push time with the Hub id a built-in is a copy of.) ``task_type`` is ``FEATURE_EXTRACTION``: the
    adapter sits on a bare backbone and the run's pooling and head are not PEFT's, so
    ``AutoPeftModelForFeatureExtraction`` rebuilds the adapted backbone exactly, while ``AutoPeftModel`` and
    ``AutoPeftModelForSequenceClassification`` refuse with PEFT's task-type error. ``SEQ_CLS`` would make PEFT and
    the Hub's snippet build the stock classification class with a random head; None (PEFT's default) lets
    ``AutoPeftModelForSequenceClassification`` wrap the bare backbone without complaint.
    """
    path = folder / "adapter_config.json"
    if not path.is_file():
        return
    # auto_mapping only serves task_type None (PEFT writes it for no other task type)
    config = {**read_json(path, dict), "task_type": "FEATURE_EXTRACTION", "auto_mapping": None}
    if is_hub_id(model):
        config["base_model_name_or_path"] = model
    write_json(path, config)


def check_gathered(state: dict[str, Any]) -> None:
    """Refuse a state dict that still holds shards (FSDP2's DTensors): saving it would write one process's pieces.
    Gather first (``Accelerator.get_state_dict``, or torch's ``get_model_state_dict(full_state_dict=True)``)."""
    from torch.distributed.tensor import DTensor

    sharded = [k for k, v in state.items() if isinstance(v, DTensor)]
    if sharded:
        raise RuntimeError(f"the model state is sharded ({sharded[0]}, ... are pieces spread over processes) and was "
                           f"not gathered before saving; nothing was written")


def check_weights_saved(folder: Path) -> None:
    """Refuse a run folder whose saved weights are empty: what a sharded (FSDP / ZeRO-3) model saves when its
    state was not gathered first. Raised inside the atomic write, so no such folder ever appears."""
    for path in sorted(folder.glob("*.safetensors")):
        tensors = load_file(str(path))
        empty = [k for k, v in tensors.items() if v.numel() == 0]
        if not tensors or empty:
            raise RuntimeError(f"{path.name} would hold empty weights ({', '.join(empty[:3]) or 'no tensors'}); "
                               f"the model state was sharded and not gathered before saving, so nothing was "
                               f"written")


@dataclass
class LoadedRun:
    model: AdapterClassifier
    processor: Any
    cfg: TrainConfig
    labels: LabelMap
    info: dict[str, Any]
    modality: Any

    @property
    def pairs(self) -> bool:
        """Whether the run reads sentence pairs (two texts per input)."""
        return bool(self.info.get("pair_column"))

    def task(self) -> Task:
        """The run's task bound to its saved label space (runs written before tasks were recorded:
        classification)."""
        return bound_task(self.cfg, self.labels)

    def data_config(self, data: str, text_column: str | None = None, label_column: str | None = None,
                    text_pair_column: str | None = None) -> TrainConfig:
        """The config that reads ``data`` as this run was trained (its columns, unless given), whole: without the
        training or evaluation subsets the run may have been trained with."""
        return self.cfg.replace(data=data, max_train_samples=None, max_eval_samples=None,
                                text_column=text_column or self.info.get("input_column"),
                                text_pair_column=text_pair_column or self.info.get("pair_column"),
                                label_column=label_column or self.info.get("label_column"))


def bound_task(cfg: TrainConfig, labels: LabelMap) -> Task:
    """A run's task bound to its label space (runs written before tasks were recorded: classification)."""
    return get_task(cfg.task or DEFAULT_TASK, labels, cfg)


def read_json(path: Path, expect: type | None = None) -> Any:
    """A run folder's JSON file, or a one-line UserError saying it is missing, corrupt, or (``expect``) not of
    the expected shape."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path.parent} is not a complete run folder ({path.name} is missing); "
                        f"point to a folder written by adapters-kit train") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is corrupt ({getattr(e, 'msg', None) or e.reason}); retrain or restore the run "
                        f"folder") from None
    if expect is not None and not isinstance(value, expect):
        raise damaged(path, f"a JSON {type(value).__name__} where a {expect.__name__} belongs")
    return value


def damaged(path: Path, why: str) -> UserError:
    """The one-line error for a run-folder file that is there but not what adapters-kit wrote."""
    return UserError(f"{path} is damaged ({why}); retrain or restore the run folder")


def read_labels(root: Path, task: str | None = None) -> LabelMap:
    """``labels.json``'s names in id order and the task's fitted parameters, checked: a mapping ``id2label`` of ids
    0..n-1 to names (n >= 2 for classification), ``params`` a mapping."""
    path = root / "labels.json"
    content = read_json(path, dict)
    raw, params = content.get("id2label"), content.get("params", {})
    least = 2 if (task or DEFAULT_TASK) == DEFAULT_TASK else 1
    if not isinstance(raw, dict) or sorted(raw) != sorted(str(i) for i in range(len(raw))) or len(raw) < least:
        raise damaged(path, f"id2label must map the ids 0..n-1 (n >= {least}) to label names")
    if not isinstance(params, dict):
        raise damaged(path, "params must be a mapping")
    try:
        names = [normalize_label(raw[str(i)]) for i in range(len(raw))]
    except TypeError as e:
        raise damaged(path, str(e)) from None
    if None in names or len(set(names)) != len(names):
        raise damaged(path, "its label names must be distinct and not blank")
    return LabelMap(tuple(names), params)


def read_run_config(root: Path) -> TrainConfig:
    """``train_config.json`` as a config; a key or value this version does not know names the file."""
    path = root / RUN_MARKER
    try:
        return from_dict(read_json(path, dict))
    except UserError as e:
        if str(e).startswith(str(path)):
            raise
        raise UserError(f"{path}: {e}") from None


def check_weight_files(root: Path) -> None:
    """Every ``*.safetensors`` of the run opens as safetensors (header read only), the head among them."""
    if not (root / "head.safetensors").is_file():
        raise UserError(f"{root} is not a complete run folder (head.safetensors is missing); retrain or restore "
                        f"the run folder")
    for path in sorted(root.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise damaged(path, f"not a readable safetensors file: {str(e).splitlines()[0][:120]}") from None


def head_classes(state: dict[str, Any]) -> int | None:
    """How many classes a saved head scores: the length of its last layer's bias."""
    biases = [(int(k.split(".")[0]), v) for k, v in state.items() if k.endswith("bias") and k.split(".")[0].isdigit()]
    return int(max(biases, key=lambda kv: kv[0])[1].shape[0]) if biases else None


def is_hub_id(name: str) -> bool:
    """``user/name`` that is not an existing path (what the Hub calls a repo id)."""
    name = str(name)
    return bool(name) and name.count("/") == 1 and not name.startswith((".", "/", "~")) and not os.path.exists(name)


def resolve_base(root: Path, cfg: TrainConfig, info: dict[str, Any], base_model: str | None = None) -> str:
    """Where the run's base model is on this machine: ``base_model`` if given; the run's own ``base/`` (a
    distilled student's pruned backbone); the recorded backbone path if it
    exists here; a built-in's packaged copy; else a Hub id from ``train_config.json`` or ``adapter_config.json``
    (runs copied from another machine record folder paths that do not exist here)."""
    if base_model:
        return base_model
    if (root / "base" / "config.json").is_file():  # a layer-pruned student carries its own base
        return str(root / "base")
    if info.get("teacher", {}).get("blocks_kept"):  # never load its blocks into the whole model it was cut from
        raise UserError(f"{root} is a distilled student whose base checkpoint (base/) is missing; restore the whole "
                        f"run folder")
    recorded = info.get("backbone_path", "")
    if recorded and os.path.exists(recorded):
        return recorded
    if cfg.model in MODELS:
        return MODELS[cfg.model].path()
    adapter_cfg = root / "adapter_config.json"
    peft_base = read_json(adapter_cfg).get("base_model_name_or_path") or "" if adapter_cfg.exists() else ""
    for candidate in (cfg.model, peft_base):
        if candidate and (os.path.isdir(candidate) or is_hub_id(candidate)):
            return candidate
    raise UserError(f"the base model of {root} ({cfg.model}) is not on this machine; pass base_model= (API) with "
                    f"a local copy of it")


def check_format(root: Path, info: dict[str, Any]) -> None:
    """Older formats load (missing keys get defaults); a newer one is refused in one line."""
    version = info.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{root} was written by a newer adapters_kit (run format {version}; this version reads up "
                        f"to {FORMAT_VERSION}); upgrade adapters_kit to load it")


@dataclass
class RunParts:
    """A run folder read and checked, all but its adapted backbone: what :func:`load_run` builds a model from,
    and what a server that shares one backbone among several runs attaches to its own."""

    root: Path
    cfg: TrainConfig
    labels: LabelMap
    info: dict[str, Any]
    modality: Any
    base: str
    """Where the run's base model is on this machine (:func:`resolve_base`)."""
    processor: Any
    head_state: dict[str, Any]

    def task(self) -> Task:
        """The run's task bound to its saved label space."""
        return bound_task(self.cfg, self.labels)

    def adapter(self):
        """The run's adapter strategy (:mod:`adapters_kit.methods.adapters`): how its backbone state is restored."""
        return get_recipe(self.cfg.method).adapter(self.cfg)

    def load_backbone(self):
        """A fresh copy of the run's base model (not yet adapted)."""
        return self.modality.load_backbone(self.base, self.processor)

    def build(self, backbone) -> AdapterClassifier:
        """The run's classifier over ``backbone`` (already adapted): its pooling and its saved head, in eval mode."""
        with self.mismatch():
            head = build_head(self.cfg.head, feature_dim(backbone), len(self.labels), self.cfg.head_dropout)
            head.load_state_dict(self.head_state)
        return AdapterClassifier(backbone, self.cfg.pooling, head).eval()

    @contextmanager
    def mismatch(self):
        """Turn the errors of loading this run's adapter or head onto a base it does not fit into one line."""
        try:
            yield
        except (ValueError, RuntimeError, KeyError, SafetensorError) as e:  # missing target modules, shape mismatches
            raise UserError(f"the adapter or head in {self.root} does not match base model {self.base} "
                            f"({first_line(e)}); load it with the model it was trained on (API: base_model=...)"
                            ) from None


def read_run(directory: str | Path, base_model: str | None = None) -> RunParts:
    """Read and check a run folder's files (config, labels, head, processor) and find its base model."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"run folder {root} does not exist; give the --output folder of a training run")
    info = read_json(root / RUN_INFO, dict)
    check_format(root, info)
    cfg = read_run_config(root)
    labels = read_labels(root, cfg.task)
    check_weight_files(root)
    head_state = load_file(str(root / "head.safetensors"))
    if head_classes(head_state) not in (None, len(labels)):
        raise damaged(root / "labels.json", f"it lists {len(labels)} labels but head.safetensors scores "
                                            f"{head_classes(head_state)} classes")
    modality = get_modality(info.get("modality", "text"), cfg)
    base = resolve_base(root, cfg, info, base_model)
    return RunParts(root, cfg, labels, info, modality, base, modality.load_processor(str(root)), head_state)


def load_run(directory: str | Path, base_model: str | None = None) -> LoadedRun:
    """Rebuild the trained classifier of a run folder, in eval mode. ``base_model`` overrides where the
    backbone is loaded from (a local copy when the recorded one is elsewhere)."""
    parts = read_run(directory, base_model)
    with parts.mismatch():
        backbone = parts.adapter().load(parts.load_backbone(), str(parts.root))
    return LoadedRun(parts.build(backbone), parts.processor, parts.cfg, parts.labels, parts.info, parts.modality)
