"""Adapter strategies: which backbone parameters train, and how that state is saved and restored.

Every strategy trains the classification head; the head itself is saved with the run for all of them. Each
registered strategy is also a ``--method`` of its own (:mod:`adapters_kit.methods.recipe` makes the plain recipe of
it), and the strategy the wrapping recipes (LP-FT, DANN, joint, autoencoder pretraining) train.
"""

from __future__ import annotations

import math
import os
import re
from typing import Protocol

from peft import IA3Config, LoHaConfig, LoKrConfig, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.registry import Registry

_BLOCK = re.compile(r"\.(\d+)\.")  # a module inside a repeated block: encoder.layer.3.attention.self.query
_ATTENTION = re.compile(r"attn|attention", re.IGNORECASE)
BACKBONE_WEIGHTS = "backbone_trainable.safetensors"


class Adapter(Protocol):
    name: str
    default_lr: float
    default_epochs: int
    frozen_backbone: bool
    """True when the backbone never changes, so its pooled features can be computed once and reused."""
    peft: bool
    """True when the run folder holds a PEFT adapter (``adapter_config.json``), loadable by ``PeftModel``."""
    rank: bool
    """True when ``lora_r`` sets the adapter's rank (the sweep's default space searches it)."""
    card_text: str
    """What the model card says the method trained, e.g. "a LoRA adapter"."""
    knobs: tuple[str, ...]
    """The config fields this strategy reads (shown on the model card)."""
    default_attention_dropout: float | None
    """Attention-probability dropout while training when ``TrainConfig.attention_dropout`` is not given; None: the
    backbone's own value."""

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module: ...

    def save(self, backbone: nn.Module, directory: str, state: dict | None = None) -> None:
        """Write what the method trained. ``state``: the backbone's full state dict gathered across processes
        (FSDP / ZeRO-3 shard parameters, so the module's own tensors may be empty pieces); default: the module's."""

    def load(self, backbone: nn.Module, directory: str) -> nn.Module: ...


ADAPTERS: Registry[type] = Registry("adapter")


def _adaptable(module: nn.Module) -> bool:
    """Linear layers, and the convolutions of CNN blocks that mix channels (grouped / depthwise ones, whose
    weights are per-channel filters, are left alone)."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)


def block_linear_names(backbone: nn.Module) -> list[str]:
    """Full names of the layers inside the backbone's repeated blocks that an adapter can target: attention and
    MLP linears of transformers, channel-mixing convolutions of CNN stages.

    Chosen by module type and position, not by name, so it works whatever a family calls its projections
    (``query``/``value``, ``q_proj``/``v_proj``, ``fc1``, ``expand_1x1.convolution``...). Embeddings, stems,
    audio feature encoders (1-D convs) and poolers sit outside the blocks and are left alone; the
    classification head is not part of the backbone at all.
    """
    return [name for name, module in backbone.named_modules()
            if _adaptable(module) and block_index(name) is not None]


def select_targets(backbone: nn.Module, spec: str) -> list[str]:
    """``attention``, ``mlp``, ``all-linear`` or comma-separated module-name suffixes -> full module names.

    Attention layers are the block linears whose path mentions attention (``attention``, ``attn``, ``self_attn``);
    the other block linears are the MLP.
    """
    linears = block_linear_names(backbone)
    if spec == "all-linear":
        chosen = linears
    elif spec in ("attention", "mlp"):
        chosen = [n for n in linears if bool(_ATTENTION.search(n)) == (spec == "attention")]
    else:
        wanted = [w.strip() for w in spec.split(",") if w.strip()]
        chosen = [n for n in linears if any(n == w or n.endswith("." + w) for w in wanted)]
        unknown = [w for w in wanted if not any(n == w or n.endswith("." + w) for n in linears)]
        if unknown:
            examples = sorted({n.split(".")[-1] for n in linears})
            raise UserError(f"--targets names no linear layer of the backbone: {', '.join(unknown)}; block "
                            f"linears are named: {', '.join(examples)} (or use attention, mlp, all-linear)")
    if not chosen:
        raise UserError(f"--targets {spec!r} selects no linear layer in the blocks of {type(backbone).__name__}")
    return chosen


def block_index(name: str) -> int | None:
    """The index of the repeated block a parameter or module belongs to (``encoder.layer.3.attention...`` -> 3),
    or None outside the blocks (embeddings, stems, poolers)."""
    m = _BLOCK.search(f".{name}.")
    return int(m.group(1)) if m else None


def top_blocks(names: list[str], k: int, flag: str) -> list[str]:
    """The names inside the top ``k`` (>= 1) repeated blocks, by block index; ``flag`` names the setting in the
    error when there are fewer blocks. Training only the top blocks means the frozen blocks below never run
    backward: autograd stops where nothing beneath requires a gradient."""
    blocks = sorted({b for n in names if (b := block_index(n)) is not None})
    if k > len(blocks):
        raise UserError(f"{flag} {k} exceeds the backbone's {len(blocks)} blocks")
    top = set(blocks[-k:])
    return [n for n in names if block_index(n) in top]


@ADAPTERS.register("probe")
class Probe:
    """Feature-based transfer: the backbone is frozen; only the head trains (on cached pooled features)."""

    name = "probe"
    default_lr = 1e-2
    default_epochs = 30
    default_attention_dropout = None  # the backbone never trains: it runs in eval mode
    frozen_backbone = True
    peft = rank = False
    card_text = "a linear probe on the frozen backbone"
    knobs = ("probe_solver",)

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module:
        return backbone.requires_grad_(False)

    def save(self, backbone: nn.Module, directory: str, state: dict | None = None) -> None:
        """Nothing: the backbone is the pretrained one, reloaded from ``train_config.json``'s model."""

    def load(self, backbone: nn.Module, directory: str) -> nn.Module:
        return backbone.requires_grad_(False)


class _Peft:
    """A PEFT adapter on the selected block linears; base weights frozen. Saved in PEFT's own format."""

    default_epochs = 2
    default_layers: float | None = None
    """Share of the blocks (from the top) adapted when ``adapter_layers`` is not given; None: every block."""
    default_attention_dropout: float | None = 0.0
    frozen_backbone = False
    peft, rank = True, False
    knobs = ("targets", "adapter_layers")

    def peft_config(self, targets: list[str], cfg: TrainConfig):
        raise NotImplementedError

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module:
        targets = select_targets(backbone, cfg.targets)
        layers = cfg.adapter_layers
        if layers is None and self.default_layers:  # the method's default share of the blocks, from the top
            layers = math.ceil(len({block_index(n) for n in targets}) * self.default_layers)
        if layers:  # 0: every block
            targets = top_blocks(targets, layers, "--adapter-layers")
        if isinstance(self, Lora):
            too_big = [n for n in targets if cfg.lora_r > min(backbone.get_submodule(n).weight.shape[:2])]
            if too_big:
                raise UserError(f"--lora-r {cfg.lora_r} is larger than layer {too_big[0]} "
                                f"({tuple(backbone.get_submodule(too_big[0]).weight.shape[:2])}); lower the rank")
        return get_peft_model(backbone, self.peft_config(targets, cfg))

    def save(self, backbone: nn.Module, directory: str, state: dict | None = None) -> None:
        backbone.save_pretrained(directory, state_dict=state)  # adapter_config.json + adapter_model.safetensors
        stub = os.path.join(directory, "README.md")  # PEFT's empty card template; the run has its own files
        if os.path.exists(stub):
            os.remove(stub)

    def load(self, backbone: nn.Module, directory: str) -> nn.Module:
        return PeftModel.from_pretrained(backbone, directory)


@ADAPTERS.register("lora")
class Lora(_Peft):
    """PEFT LoRA on every attention/MLP linear of the top half of the blocks (by default).

    The defaults are chosen for time to a good model: adapting only the top half means the lower half runs forward
    only (no backward pass reaches it), and one epoch at lr 2e-3 converges as far as two at a lower rate (measured
    in README's benchmarks)."""

    name = "lora"
    default_lr = 2e-3
    default_epochs = 1
    default_layers = 0.5
    rank = True
    card_text = "a LoRA adapter"
    knobs = ("lora_r", "lora_alpha", "lora_dropout", "targets", "adapter_layers")

    def peft_config(self, targets: list[str], cfg: TrainConfig):
        return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, bias="none", use_dora=self.name == "dora")


@ADAPTERS.register("dora")
class Dora(Lora):
    """PEFT DoRA: LoRA with the weight's magnitude learned separately from its direction."""

    name = "dora"
    card_text = "a DoRA adapter"


class _Lycoris(_Peft):
    """PEFT's LyCORIS adapters share one shape: rank ``--lora-r``, scale ``--lora-alpha``, and ``--lora-dropout``
    as PEFT's ``module_dropout`` (whole adapted modules dropped per step)."""

    default_lr = 1e-3
    config_class: type = LoHaConfig
    rank = True
    knobs = ("lora_r", "lora_alpha", "lora_dropout", "targets", "adapter_layers")

    def peft_config(self, targets: list[str], cfg: TrainConfig):
        return self.config_class(r=cfg.lora_r, alpha=cfg.lora_alpha, module_dropout=cfg.lora_dropout,
                                 target_modules=targets)


@ADAPTERS.register("loha")
class LoHa(_Lycoris):
    """PEFT LoHa: the weight update is the Hadamard product of two rank-r products (rank up to r^2)."""

    name = "loha"
    card_text = "a LoHa adapter"
    config_class = LoHaConfig


@ADAPTERS.register("lokr")
class LoKr(_Lycoris):
    """PEFT LoKr: the weight update is a Kronecker product of a small factor and a rank-r factor."""

    name = "lokr"
    card_text = "a LoKr adapter"
    config_class = LoKrConfig


@ADAPTERS.register("ia3")
class IA3(_Peft):
    """PEFT (IA)^3: learned scaling vectors on the selected layers (inputs of MLP layers, outputs otherwise)."""

    name = "ia3"
    default_lr = 5e-3
    card_text = "an (IA)^3 adapter"

    def peft_config(self, targets: list[str], cfg: TrainConfig):
        return IA3Config(target_modules=targets, feedforward_modules=[t for t in targets if not _ATTENTION.search(t)])


class _Unfrozen:
    """Some backbone weights train directly; exactly those are saved (safetensors), next to the head."""

    default_epochs = 2
    default_attention_dropout = None  # the backbone's own: these methods retrain its weights as pretraining did
    frozen_backbone = False
    peft = rank = False
    knobs: tuple[str, ...] = ()

    def unfreeze(self, backbone: nn.Module, cfg: TrainConfig) -> None:
        raise NotImplementedError

    def attach(self, backbone: nn.Module, cfg: TrainConfig) -> nn.Module:
        backbone.requires_grad_(False)
        self.unfreeze(backbone, cfg)
        return backbone

    def save(self, backbone: nn.Module, directory: str, state: dict | None = None) -> None:
        source = state if state is not None else dict(backbone.named_parameters())
        trained = {n: source[n].detach().cpu().contiguous() for n, p in backbone.named_parameters() if p.requires_grad}
        save_file(trained, os.path.join(directory, BACKBONE_WEIGHTS))

    def load(self, backbone: nn.Module, directory: str) -> nn.Module:
        state = load_file(os.path.join(directory, BACKBONE_WEIGHTS))
        missing = set(state) - {n for n, _ in backbone.named_parameters()}
        if missing:
            raise UserError(f"{directory} holds weights this backbone lacks ({sorted(missing)[0]}, ...); "
                            f"the run was trained on another model")
        backbone.load_state_dict(state, strict=False)
        return backbone.requires_grad_(False)


@ADAPTERS.register("unfreeze-top-k")
class UnfreezeTopK(_Unfrozen):
    """Shared lower blocks stay frozen; the top ``unfreeze_k`` blocks (task-specific) train with the head."""

    name = "unfreeze-top-k"
    default_lr = 5e-5
    card_text = "the top blocks fine-tuned"
    knobs = ("unfreeze_k",)

    def unfreeze(self, backbone: nn.Module, cfg: TrainConfig) -> None:
        names = [n for n, _ in backbone.named_parameters()]
        if all(block_index(n) is None for n in names):
            raise UserError(f"{type(backbone).__name__} has no repeated blocks to unfreeze; use another method")
        for n in top_blocks(names, cfg.unfreeze_k, "--unfreeze-k"):
            backbone.get_parameter(n).requires_grad_(True)


@ADAPTERS.register("full")
class Full(_Unfrozen):
    """Full fine-tuning: every backbone weight trains (and the run folder holds the whole backbone)."""

    name = "full"
    default_lr = 3e-5
    card_text = "full fine-tuning"

    def unfreeze(self, backbone: nn.Module, cfg: TrainConfig) -> None:
        # adapters_kit pools the last hidden states itself, so a backbone's own pooler (BERT's) gets no gradient:
        # leave it frozen rather than carry (and make DDP wait for) parameters that never learn.
        for n, p in backbone.named_parameters():
            p.requires_grad_(not n.startswith("pooler."))


def build_adapter(name: str) -> Adapter:
    """The registered adapter strategy ``name``; unknown names raise with the list of valid ones."""
    return ADAPTERS.get(name)()
