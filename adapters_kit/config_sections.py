"""The config's groups of settings (:data:`SECTIONS`) and how a YAML file that nests them becomes flat settings."""

from __future__ import annotations

from typing import Any

from adapters_kit.errors import UserError

SECTIONS: dict[str, tuple[str, ...]] = {
    "backbone": ("model", "pooling", "head", "head_dropout", "attention_dropout", "fast_dropout"),
    "dataset": ("data", "task", "text_column", "text_pair_column", "label_column", "label_separator",
                "val_fraction", "max_train_samples", "max_eval_samples",
                "max_length", "group_by_length", "augment", "flip", "audio_seconds"),
    "adaptation": ("method", "adapter", "lora_r", "lora_alpha", "lora_dropout", "targets", "adapter_layers",
                   "unfreeze_k", "lp_ft_stage", "probe_epochs", "probe_solver", "cache_features", "pretrain_data",
                   "pretrain_epochs", "mask_ratio", "target_data", "source_data", "joint_lambda",
                   "compare_source_only"),
    "distillation": ("teacher", "student_layers", "student_layer_map", "temperature", "alpha", "unlabeled_data"),
    "optimisation": ("epochs", "max_steps", "lr", "batch_size", "grad_accum_steps", "weight_decay", "warmup_ratio",
                     "max_grad_norm", "loss", "pos_weight", "layer_decay", "mixed_precision", "seed"),
    "evaluation": ("eval_batch_size", "eval_splits", "eval_steps", "best_metric", "thresholds",
                   "early_stopping_patience", "top_k"),
    "run": ("output", "overwrite", "resume", "resume_from", "save_steps", "save_total_limit", "report_to", "extra"),
}
"""The config's groups: the CLI's help and the configuration reference list the settings by them, and a YAML file
may nest them (``optimisation: {lr: 1e-3}``; no group is named like a setting) or keep them flat (``lr: 1e-3``).
The run's ``train_config.json`` is flat."""


def section_of(name: str) -> str:
    """The group a config field belongs to."""
    return next(section for section, names in SECTIONS.items() if name in names)


def flatten_sections(values: dict[str, Any], path: Any) -> dict[str, Any]:
    """A YAML mapping whose top-level keys may be :data:`SECTIONS` holding their fields -> flat ``field: value``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            stray = [k for k in value if k not in SECTIONS[key]]
            if stray:
                where = ", ".join(f"{k} (in {section_of(k)})" if any(k in f for f in SECTIONS.values()) else k
                                  for k in stray)
                raise UserError(f"config {path}: section {key} holds settings of other sections or unknown ones: "
                                f"{where}; move them (or write them flat, without a section)")
            nested = value
        else:
            nested = {key: value}
        twice = sorted(set(nested) & set(flat))
        if twice:
            raise UserError(f"config {path}: {twice[0]} is set twice (flat and in its section); keep one")
        flat.update(nested)
    return flat
