"""Adapter strategies: which backbone parameters train, and how that state is saved and restored.

Every strategy trains the classification head; the head itself is saved by ``checkpoint`` for all of them.
"""

from __future__ import annotations

import os
import re
from typing import Protocol

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from adapters_kit.config import TrainConfig
from adapters_kit.registry import Registry

_BLOCK = re.compile(r"\.\d+\.")  # a module inside a repeated block: encoder.layer.3.attention.self.query


class Adapter(Protocol):
    name: str
    default_lr: float
    default_epochs: int
    frozen_backbone: bool
    """True when the backbone never changes, so its pooled features can be computed once and reused."""

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module: ...

    def save(self, backbone: nn.Module, directory: str) -> None: ...

    def load(self, backbone: nn.Module, directory: str) -> nn.Module: ...


ADAPTERS: Registry[type] = Registry("method")


def block_linear_names(backbone: nn.Module) -> list[str]:
    """Full names of the ``nn.Linear`` layers inside the backbone's repeated blocks (attention and MLP).

    Chosen by module type and position, not by name, so it works whatever a family calls its projections
    (``query``/``value``, ``q_proj``/``v_proj``, ``fc1``...). Embedding projections and poolers sit outside the
    blocks and are left alone; the classification head is not part of the backbone at all.
    """
    return [name for name, module in backbone.named_modules()
            if isinstance(module, nn.Linear) and _BLOCK.search(f".{name}.")]


@ADAPTERS.register("probe")
class Probe:
    """Feature-based transfer: the backbone is frozen; only the head trains (on cached pooled features)."""

    name = "probe"
    default_lr = 1e-2
    default_epochs = 30
    frozen_backbone = True

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module:
        return backbone.requires_grad_(False)

    def save(self, backbone: nn.Module, directory: str) -> None:
        """Nothing: the backbone is the pretrained one, reloaded from ``train_config.json``'s model."""

    def load(self, backbone: nn.Module, directory: str) -> nn.Module:
        return backbone.requires_grad_(False)


@ADAPTERS.register("lora")
class Lora:
    """PEFT LoRA on every attention/MLP linear layer of the backbone's blocks; base weights frozen."""

    name = "lora"
    default_lr = 1e-3
    default_epochs = 2
    frozen_backbone = False

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module:
        targets = block_linear_names(backbone)
        if not targets:
            raise ValueError(f"no linear layers inside repeated blocks of {type(backbone).__name__}")
        config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                            target_modules=targets, bias="none")
        return get_peft_model(backbone, config)

    def save(self, backbone: nn.Module, directory: str) -> None:
        backbone.save_pretrained(directory)  # adapter_config.json + adapter_model.safetensors
        stub = os.path.join(directory, "README.md")  # PEFT's empty card template; the run has its own files
        if os.path.exists(stub):
            os.remove(stub)

    def load(self, backbone: nn.Module, directory: str) -> nn.Module:
        return PeftModel.from_pretrained(backbone, directory)


def build_adapter(name: str) -> Adapter:
    return ADAPTERS.get(name)()
