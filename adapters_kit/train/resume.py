"""Training checkpoints: what a run needs to continue exactly where it stopped, written atomically.

A checkpoint is a ``checkpoint-<global step>`` folder (``checkpoint-<stage>-<step>`` for a recipe's pre-stage,
such as autoencoder pretraining; those go once the main stage writes its first) inside the run's output folder
holding the trainable weights (safetensors), the optimizer and scheduler states, every process's RNG states, the
best weights seen so far, and ``state.json`` with the loop position (epoch, batches done in it, global step), the
evaluation history, the step log and the timing. It is written into a hidden temporary folder and renamed into
place, so a checkpoint that exists is complete. Tensors load with ``weights_only=True``: no pickled code runs.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from adapters_kit.errors import UserError
from adapters_kit.runs.output import CHECKPOINT_PREFIX

PREFIX = CHECKPOINT_PREFIX
STATE = "state.json"
_NAME = re.compile(rf"^{PREFIX}(?:([a-z]+)-)?(\d+)$")
RESUME_KEYS_FREE = ("resume", "resume_from", "overwrite", "save_steps", "save_total_limit")
"""Config fields that may differ between the interrupted command and the resuming one."""
RECORDED_SINCE = {"fast_dropout": False}
"""Settings that checkpoints of older versions do not record, with the value those versions trained with."""


@dataclass
class Position:
    """Where the loop is: epoch (1-based), batches of it done, optimizer steps done in all."""

    epoch: int = 1
    batch: int = 0
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """The loop's own records (history, log, timing, selection) as JSON-ready values."""


@dataclass
class Checkpointing:
    """Where and how often the loop saves checkpoints, and which one (if any) it resumes from."""

    output: str
    save_steps: int | None
    keep: int
    config: dict[str, Any]
    """The run's resolved config: a checkpoint only resumes a run of the same settings."""
    resume_from: Path | None = None
    stage: str = ""
    """The pre-stage these checkpoints belong to; "" for the main stage."""
    stages: dict[str, Any] = field(default_factory=dict)
    """Figures of the stages run before this one; kept in the checkpoints, so a resumed run reports them."""


def checkpoint_name(step: int, stage: str = "") -> str:
    return f"{PREFIX}{stage}-{step}" if stage else f"{PREFIX}{step}"


def stage_of(path: Path) -> str:
    """The stage a checkpoint folder belongs to ("" for the main stage)."""
    m = _NAME.match(Path(path).name)
    return (m.group(1) or "") if m else ""


def list_checkpoints(output: str | Path, stage: str | None = "") -> list[Path]:
    """Complete checkpoints of a run folder, oldest first: the main stage's, one pre-stage's, or (``stage=None``)
    every pre-stage's."""
    root = Path(output)
    if not root.is_dir():
        return []
    found = [(int(m.group(2)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))
             and ((m.group(1) or "") == stage if stage is not None else m.group(1))]
    return [p for _, p in sorted(found) if (p / STATE).exists()]


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    np_state = np.random.get_state()
    return ({"torch": torch.get_rng_state()},
            {"python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]})


def _set_rng_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    version, internal, gauss = values["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = values["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))


def save_checkpoint(output: str | Path, accelerator, model, optimizer, scheduler, position: Position,
                    best: dict[str, torch.Tensor] | None, config: dict[str, Any], stage: str = "") -> Path:
    """Write ``checkpoint-<step>`` (every process writes its RNG state; the main process the rest). A write that
    fails (a full disk) removes its temporary folder and stops the run with one line; earlier checkpoints stay."""
    final = Path(output) / checkpoint_name(position.step, stage)
    tmp = Path(output) / f".{final.name}.tmp"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        _write_checkpoint(tmp, accelerator, model, optimizer, scheduler, position, best, config)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"could not write checkpoint {final} ({e.strerror or e}); the run stopped and the "
                        f"unfinished checkpoint was removed: free space, then run the same command with --resume "
                        f"(or --overwrite to start again)") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def _write_checkpoint(tmp: Path, accelerator, model, optimizer, scheduler, position: Position,
                      best: dict[str, torch.Tensor] | None, config: dict[str, Any]) -> None:
    rank = accelerator.process_index
    tensors, values = _rng_state()
    save_file(tensors, str(tmp / f"rng_{rank}.safetensors"))
    (tmp / f"rng_{rank}.json").write_text(json.dumps(values))
    if accelerator.is_main_process:
        save_file(_trainable(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
        save_file(best or {}, str(tmp / "best.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
        state = {"epoch": position.epoch, "batch": position.batch, "step": position.step, "config": config,
                 "num_processes": accelerator.num_processes, **position.extra}
        (tmp / STATE).write_text(json.dumps(state))


STATE_SHAPE = {"epoch": int, "batch": int, "step": int, "config": dict}
"""The keys of ``state.json`` resuming reads, with their types."""


def _check_shape(path: Path, state: Any, keys: tuple[str, ...]) -> None:
    """``state.json`` is a mapping holding ``keys`` with their :data:`STATE_SHAPE` types, or one line says not."""
    wrong = [k for k in keys if not isinstance(state, dict) or not isinstance(state.get(k), STATE_SHAPE[k])
             or isinstance(state.get(k), bool)]
    if wrong:
        raise UserError(f"{path / STATE} is damaged ({', '.join(wrong)} missing or of the wrong type); resume from "
                        f"another checkpoint or start again with --overwrite")


def check_resumable(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``state.json``, after checking it belongs to the same run settings."""
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is not a complete checkpoint (no readable {STATE}); choose another") from None
    _check_shape(path, state, ("config",))
    saved = {k: v for k, v in {**RECORDED_SINCE, **state.get("config", {})}.items() if k not in RESUME_KEYS_FREE}
    now = {k: v for k, v in config.items() if k not in RESUME_KEYS_FREE}
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        raise UserError(f"checkpoint {path} was written with other settings ({', '.join(differ)}); resume with "
                        f"the original command or start again with --overwrite")
    return state


def load_checkpoint(path: Path, state: dict[str, Any], accelerator, model, optimizer,
                    scheduler) -> tuple[Position, dict[str, torch.Tensor] | None]:
    """Restore weights, optimizer, scheduler and this process's RNG; returns the position and the best weights."""
    _check_shape(path, state, ("epoch", "batch", "step"))
    if state.get("num_processes", 1) != accelerator.num_processes:
        raise UserError(f"checkpoint {path} was written by {state['num_processes']} process(es), this launch has "
                        f"{accelerator.num_processes}; resume with the same launch")
    unwrapped = accelerator.unwrap_model(model)
    weights = load_file(str(path / "trainable.safetensors"))
    if set(weights) != set(_trainable(unwrapped)):
        raise UserError(f"checkpoint {path} holds other trainable weights than this model; it belongs to another "
                        f"run")
    unwrapped.load_state_dict(weights, strict=False)
    saved = torch.load(path / "optim.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rank = accelerator.process_index
    rng = json.loads((path / f"rng_{rank}.json").read_text())
    _set_rng_state(load_file(str(path / f"rng_{rank}.safetensors")), rng)
    best = load_file(str(path / "best.safetensors")) or None
    extra = {k: v for k, v in state.items() if k not in ("epoch", "batch", "step", "config", "num_processes")}
    return Position(state["epoch"], state["batch"], state["step"], extra), best


def rotate(output: str | Path, keep: int, best_step: int | None, stage: str = "") -> None:
    """Delete older checkpoints of ``stage``, keeping the newest ``keep`` and the one saved at ``best_step``. Once
    the main stage has one, every pre-stage checkpoint goes: a resumed run continues from the main stage."""
    found = list_checkpoints(output, stage)
    protected = set(found[-keep:]) | {p for p in found if p.name == checkpoint_name(best_step, stage)}
    obsolete = [p for p in found if p not in protected] + (list_checkpoints(output, None) if not stage else [])
    for p in obsolete:
        shutil.rmtree(p, ignore_errors=True)
