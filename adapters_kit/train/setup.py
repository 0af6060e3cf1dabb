"""A run's setting-up: the config's defaults resolved against the method and the backbone, and the accelerator
(with its trackers) that the CLI or a notebook trains with. Library code below never creates an accelerator."""

from __future__ import annotations

import logging
import os

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from transformers import AutoConfig

from adapters_kit.builtin.resolve import fit_max_length, resolve_model
from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.methods import validate
from adapters_kit.modalities import get_modality
from adapters_kit.model.heads import HEADS, POOLERS
from adapters_kit.runs.checkpoint import tracker_dir
from adapters_kit.tasks import TASKS

log = logging.getLogger(__name__)


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill method-dependent defaults (lr, epochs, pooling, max length); check every registered name and what the
    method needs before work starts."""
    recipe = validate(cfg)
    defaults = recipe.defaults(cfg)
    HEADS.get(cfg.head)
    if cfg.task is not None:
        TASKS.get(cfg.task)  # an unknown name lists the registered ones
    pooling = cfg.pooling
    if pooling is None:
        path, modality = resolve_model(cfg.model)
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError):
            config = None  # the backbone's own loading reports it precisely
        pooling = get_modality(modality).default_pooling(config)
    POOLERS.get(pooling)
    attention_dropout = cfg.attention_dropout
    if attention_dropout is None:
        attention_dropout = defaults["attention_dropout"]
    augment = cfg.augment
    if augment is None:  # on for methods that change the backbone; a frozen one's features are computed once
        augment = not recipe.adapter(cfg).frozen_backbone
    return cfg.replace(augment=augment, lr=cfg.lr or defaults["lr"], epochs=cfg.epochs or defaults["epochs"],
                       pooling=pooling, attention_dropout=attention_dropout,
                       max_length=fit_max_length(cfg.model, cfg.max_length))


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The one ``Accelerator`` of a run started from the CLI or a notebook (scripts pass their own)."""
    mp = cfg.mixed_precision
    if mp == "fp16" and not torch.cuda.is_available():
        log.warning("fp16 needs a GPU; training in fp32 instead")
        mp = "no"
    if mp == "bf16" and not torch.cuda.is_available() and not _cpu_has_bf16():
        log.warning("bf16 on this CPU (no avx512_bf16/amx_bf16) is emulated and can be ~20x slower than fp32; "
                    "use --mixed-precision no for speed")
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mp) != mp:
        # A notebook that trains twice with different precision: accelerate's process-wide state would refuse.
        # In one process nothing else depends on it, so start afresh; across processes it is a launch setting.
        if PartialState().num_processes > 1:
            raise UserError(f"mixed precision {mp!r} differs from the launch's {state['_mixed_precision']!r}; "
                            f"pass the same value to accelerate launch and to the config")
        AcceleratorState._reset_state()
    # Under a multi-process launch (torchrun / `accelerate launch --multi_gpu`) on a machine without CUDA, accelerate
    # only forms the gloo process group when told it is on CPU; otherwise every process believes it is alone.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    trackers = _trackers(cfg)
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg.grad_accum_steps, cpu=cpu,
                       log_with=trackers or None, project_dir=str(tracker_dir(cfg.output)) if trackers else None)


def _trackers(cfg: TrainConfig) -> list[str]:
    """``--report-to`` as accelerate tracker names, each checked to be installed. Nothing goes to a network:
    wandb runs in offline mode unless the user set ``WANDB_MODE`` themselves."""
    from accelerate.utils import LoggerType
    from accelerate.utils.imports import is_tensorboard_available, is_wandb_available

    names = [t.strip() for t in (cfg.report_to or "").split(",") if t.strip() and t.strip() != "none"]
    known = [t.value for t in LoggerType if t.value != "all"]
    unknown = [t for t in names if t not in known]
    if unknown:
        raise UserError(f"unknown --report-to tracker {unknown[0]!r}; choose from: {', '.join(known)}")
    installed = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    missing = [t for t in names if t in installed and not installed[t]()]
    if missing:
        raise UserError(f"--report-to {missing[0]} needs the {missing[0]} package; run: pip install {missing[0]}")
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
    return names


def load_processor(modality, path: str):
    """The modality's processor of the backbone at ``path``; a folder or id it cannot load is one clear line."""
    try:
        return modality.load_processor(path)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if os.path.isdir(path) else ("; fetch it once where the Hub is reachable (it is then cached) "
                                                "or pass a local checkpoint folder")
        raise UserError(f"cannot load model {path!r}: {first[:300]}{hint}") from None
