"""Local run folders: save (atomically) and load adapter + head + labels + processor + config + metrics.

A run folder is complete or absent: everything is written into a hidden temporary sibling and renamed into
place at the end, so an interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import load_file, save_file

from adapters_kit.adapters import build_adapter
from adapters_kit.catalog import MODELS
from adapters_kit.config import TrainConfig, from_dict, save_config
from adapters_kit.data import LabelMap
from adapters_kit.errors import UserError
from adapters_kit.heads import build_head
from adapters_kit.modalities import get_modality
from adapters_kit.modeling import AdapterClassifier, feature_dim
from adapters_kit.resume import PREFIX, STATE, list_checkpoints

FORMAT_VERSION = 1
RUN_MARKER = "train_config.json"


def check_output(directory: str | Path, overwrite: bool, resume: bool = False,
                 resume_from: str | None = None) -> Path | None:
    """Check the output folder before any work; returns the checkpoint to resume from, if any.

    A folder holding anything is refused, unless it is a finished run and ``overwrite`` is set, or holds only the
    checkpoints of an unfinished run and ``resume`` (continue) or ``overwrite`` (start again) is set.
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise UserError(f"--output {path} is a file; choose a folder path")
    check_writable(path)
    if resume_from is not None:
        if not (Path(resume_from) / STATE).exists():
            raise UserError(f"--resume-from {resume_from} is not a complete checkpoint folder (no {STATE}); "
                            f"give one of the run's checkpoint-* folders")
        return Path(resume_from)
    entries = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    if (path / RUN_MARKER).exists():
        if resume or not overwrite:
            raise UserError(f"--output {path} holds a finished run; there is nothing to resume" if resume else
                            f"--output {path} already holds a run; pass --overwrite to replace it or choose "
                            f"another folder")
    elif entries and all(p.name.startswith(PREFIX) for p in entries) and (resume or not overwrite):
        if not resume:
            raise UserError(f"--output {path} holds checkpoints of an unfinished run; pass --resume to continue "
                            f"it or --overwrite to start again")
        if not list_checkpoints(path):
            raise UserError(f"--output {path} holds no complete checkpoint; run again without --resume")
        return list_checkpoints(path)[-1]
    elif entries and not all(p.name.startswith(PREFIX) for p in entries):
        raise UserError(f"--output {path} already holds files that are not a run; choose an empty or new folder")
    elif resume:
        raise UserError(f"--output {path} holds no checkpoint to resume; run again without --resume")
    for old in list_checkpoints(path):  # starting again: an earlier run's checkpoints must not mix with this one's
        shutil.rmtree(old)
    shutil.rmtree(tracker_dir(path), ignore_errors=True)  # nor its tracker logs
    return None


def check_writable(path: Path) -> None:
    """Fail before any work, not after training, when the run folder cannot be written where asked."""
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UserError(f"--output {path} cannot be written ({e.strerror or e}); choose a writable folder") from None


@contextmanager
def atomic_dir(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``directory`` only if the block finishes."""
    final = Path(directory).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def tracker_dir(output: str | Path) -> Path:
    """Where ``--report-to`` trackers write while a run trains: a hidden sibling of the run folder (so an
    unfinished run's folder holds only checkpoints); ``save_run`` moves it into the run as ``logs/``."""
    final = Path(output).resolve()
    return final.parent / f".{final.name}.logs"


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def save_run(directory: str | Path, *, model: AdapterClassifier, processor: Any, cfg: TrainConfig,
             labels: LabelMap, metrics: dict[str, Any], info: dict[str, Any], log: list[dict],
             state: dict[str, Any] | None = None) -> Path:
    """Write a complete run folder; returns its path. ``state``: the whole model's state dict as
    ``Accelerator.get_state_dict`` gathers it (full tensors under FSDP / ZeRO-3); default: the module's own."""
    state = state if state is not None else model.state_dict()
    check_gathered(state)
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    with atomic_dir(directory) as tmp:
        build_adapter(cfg.adapter_method).save(model.backbone, str(tmp), backbone_state)
        save_file({k: v.detach().cpu().contiguous() for k, v in head_state.items()}, str(tmp / "head.safetensors"))
        processor.save_pretrained(str(tmp))
        save_config(cfg, tmp / "train_config.json")
        write_json(tmp / "labels.json", {"id2label": {str(i): n for i, n in labels.id2label.items()},
                                         "label2id": labels.label2id})
        write_json(tmp / "run_info.json", {"format_version": FORMAT_VERSION, **info})
        write_json(tmp / "metrics.json", metrics)
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
        check_weights_saved(tmp)
        # Last, once everything else is written: a failed write above must not take the checkpoints (which
        # --resume needs) or the tracker logs down with the temporary folder.
        for kept in list_checkpoints(directory):  # the checkpoints the loop kept move into the finished run
            os.replace(kept, tmp / kept.name)
        if tracker_dir(directory).is_dir():  # tensorboard / wandb files of --report-to
            os.replace(tracker_dir(directory), tmp / "logs")
    return Path(directory)


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

    def data_config(self, data: str, text_column: str | None = None,
                    label_column: str | None = None) -> TrainConfig:
        """The config that reads ``data`` as this run was trained (its columns, unless given), whole: without the
        training or evaluation subsets the run may have been trained with."""
        return self.cfg.replace(data=data, max_train_samples=None, max_eval_samples=None,
                                text_column=text_column or self.info.get("input_column"),
                                label_column=label_column or self.info.get("label_column"))


def read_json(path: Path) -> Any:
    """A run folder's JSON file, or a one-line UserError saying it is missing or corrupt."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path.parent} is not a complete run folder ({path.name} is missing); "
                        f"point to a folder written by adapters-kit train") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is corrupt ({e.msg}); retrain or restore the run folder") from None


def is_hub_id(name: str) -> bool:
    """``user/name`` that is not an existing path (what the Hub calls a repo id)."""
    name = str(name)
    return bool(name) and name.count("/") == 1 and not name.startswith((".", "/", "~")) and not os.path.exists(name)


def resolve_base(root: Path, cfg: TrainConfig, info: dict[str, Any], base_model: str | None = None) -> str:
    """Where the run's base model is on this machine: ``base_model`` if given; the recorded backbone path if it
    exists here; a built-in's packaged copy; else a Hub id from ``train_config.json`` or ``adapter_config.json``
    (runs copied from another machine record folder paths that do not exist here)."""
    if base_model:
        return base_model
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


def load_run(directory: str | Path, base_model: str | None = None) -> LoadedRun:
    """Rebuild the trained classifier of a run folder, in eval mode. ``base_model`` overrides where the
    backbone is loaded from (a local copy when the recorded one is elsewhere)."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"run folder {root} does not exist; give the --output folder of a training run")
    info = read_json(root / "run_info.json")
    check_format(root, info)
    cfg = from_dict(read_json(root / "train_config.json"))
    raw = read_json(root / "labels.json")["id2label"]
    labels = LabelMap(tuple(raw[str(i)] for i in range(len(raw))))
    modality = get_modality(info.get("modality", "text"), cfg)
    path = resolve_base(root, cfg, info, base_model)
    processor = modality.load_processor(str(root))
    try:
        backbone = build_adapter(cfg.adapter_method).load(modality.load_backbone(path, processor), str(root))
        head = build_head(cfg.head, feature_dim(backbone), len(labels), cfg.head_dropout)
        head.load_state_dict(load_file(str(root / "head.safetensors")))
    except (ValueError, RuntimeError, KeyError) as e:  # missing target modules, tensor shape mismatches
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"the adapter or head in {root} does not match base model {path} ({reason}); load it with "
                        f"the model it was trained on (API: base_model=...)") from None
    model = AdapterClassifier(backbone, cfg.pooling, head).eval()
    return LoadedRun(model, processor, cfg, labels, info, modality)
