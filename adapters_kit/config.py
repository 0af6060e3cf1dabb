"""Typed run configuration: one frozen dataclass, loadable from YAML with ``key=value`` overrides.

This module imports neither torch nor transformers, so the CLI can validate flags before anything heavy loads.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters_kit.config_sections import SECTIONS as SECTIONS  # noqa: F401  (read by the CLI and the docs)
from adapters_kit.config_sections import flatten_sections
from adapters_kit.config_sections import section_of as section_of  # noqa: F401
from adapters_kit.config_values import coerce, kind_of, type_problem
from adapters_kit.errors import UserError

MIXED_PRECISION = ("no", "bf16", "fp16")
METRICS_FOR_BEST = ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
                    "top_k_accuracy", "roc_auc", "log_loss", "ece", "f1_samples", "precision_micro", "recall_micro",
                    "subset_accuracy", "hamming_loss", "map", "mse", "rmse", "mae", "r2", "pearson", "spearman",
                    "entity_f1", "entity_precision", "entity_recall", "entity_f1_macro", "token_accuracy")
"""Every metric ``best_metric`` may name: the union of the tasks' ``selectable`` metrics (a test keeps the two
equal); whether the run's task computes it is checked once the task is known."""
LOWER_IS_BETTER = ("log_loss", "ece", "hamming_loss", "mse", "rmse", "mae")
THRESHOLDS = ("fixed", "tuned")
LOSSES = ("mse", "huber")
DEFAULT_MAX_LENGTH = 128
"""Tokens per text when ``max_length`` is not given (fewer for a backbone with fewer positions)."""
MAX_SEED = 2**32 - 1
"""numpy's ``np.random.seed`` (which accelerate's ``set_seed`` calls) takes 0..2**32 - 1 only."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Saved verbatim as ``train_config.json`` in the run folder.

    >>> TrainConfig(model="minilm-l6", method="probe", data="bbc-news", output="runs/bbc").batch_size
    16
    """

    model: str = "minilm-l6"
    """Backbone: a built-in short name (``adapters-kit models``), a local checkpoint folder, or a Hub id."""
    data: str = "bbc-news"
    """Data: a built-in name (``adapters-kit datasets``), a ``load_dataset`` id or path, or
    ``train=a.csv,test=b.csv`` (CSV, TSV, JSON, JSONL, Parquet)."""
    method: str = "lora"
    """Adapter strategy: ``lora``, ``dora``, ``loha``, ``lokr``, ``ia3`` (PEFT), ``lp-ft``, ``probe`` (frozen
    backbone), ``unfreeze-top-k`` (top blocks train), ``full``, or ``dann``, ``joint``, ``autoencoder-pretrain``
    around the adapter named by ``adapter``; the head always trains."""
    output: str = "runs/latest"
    """Run folder to write; refused if it holds another run, unless ``overwrite``."""
    epochs: int | None = None
    """Passes over the training split; ``None`` takes the method's default (probe 30: its epochs run on cached
    features and cost almost nothing; lora and dora 1; every other method 2)."""
    group_by_length: bool = True
    """Text, methods that train the backbone: training batches of similar lengths (shuffled groups of 1,024
    examples, each ordered by length), so dynamic padding wastes little on data of mixed lengths; where every text
    fills ``max_length`` the order is the plain shuffle's. Evaluation batches (every method) run longest first."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (the schedule is laid out over them), even mid-epoch; ``None``: run
    every epoch."""
    lr: float | None = None
    """Peak learning rate of AdamW; ``None`` takes the method's default (lora/dora 2e-3, loha/lokr 1e-3, ia3 5e-3,
    probe 1e-2, unfreeze-top-k 5e-5, full 3e-5)."""
    batch_size: int = 16
    """Training examples per optimizer step, per process (before gradient accumulation)."""
    eval_batch_size: int = 64
    """Examples per batch when evaluating or encoding features."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated into one optimizer step."""
    max_length: int | None = None
    """Tokens kept per text (longer texts are truncated; batches are padded only to their longest). ``None``: 128,
    or the backbone's limit when its position table holds fewer; a value above that limit is refused."""
    seed: int = 42
    """Seed for initialisation, shuffling and dropout: an integer in 0..2**32 - 1 (numpy's seed range)."""
    task: str | None = None
    """What is predicted: ``classification`` (one label per input), ``multi-label`` (any number of labels per
    input), ``regression`` (a number), ``token-classification`` (a tag per word); ``None``: detected from the
    label column (lists of tags beside lists of words: token classification; other lists: multi-label; numbers
    that are not all integers, with more than 20 distinct values: regression; else classification) and
    printed."""
    text_column: str | None = None
    """Input column; detected from common names when not given."""
    text_pair_column: str | None = None
    """Second text of a sentence pair (NLI, paraphrase, question/passage), encoded with the first as the
    tokenizer's pair encoding; detected when the data has a common pair of columns (``sentence1/sentence2``,
    ``premise/hypothesis``, ``question/passage``, ``text_a/text_b``, ``query/document``)."""
    label_column: str | None = None
    """Label column; detected from common names when not given."""
    label_separator: str | None = None
    """``multi-label`` in CSV / TSV: the character between the labels of one cell (e.g. ``;``); an empty cell is
    an example with no label. JSON / Parquet lists need none."""
    val_fraction: float = 0.1
    """Share of train carved (stratified) into a validation split when the data has none."""
    max_train_samples: int | None = None
    """Keep only this many training examples (stratified), for quick runs."""
    max_eval_samples: int | None = None
    """Keep at most this many examples (stratified) of each held-out split (validation, test, ...), for quick runs
    on data with large evaluation splits."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm weights)."""
    warmup_ratio: float = 0.06
    """Share of optimizer steps spent warming the learning rate up linearly from 0; then linear decay to 0."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    loss: str = "mse"
    """``regression``: ``mse`` or ``huber`` (on the standardised target: quadratic within one standard deviation,
    linear beyond, so outliers pull less)."""
    pos_weight: bool = False
    """``multi-label``: weigh each label's positive examples by its negatives / positives ratio on the training
    split (binary cross-entropy's ``pos_weight``), for rare labels."""
    mixed_precision: str = "no"
    """``no``, ``bf16`` or ``fp16`` (passed to accelerate). fp32 is the fast path on CPUs without native bf16."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.1
    """Dropout on the LoRA input."""
    targets: str = "all-linear"
    """Layers a PEFT method adapts: ``attention``, ``mlp``, ``all-linear`` (the blocks' linears) or module names."""
    unfreeze_k: int = 2
    """Blocks (from the top) that train with ``unfreeze-top-k``."""
    adapter_layers: int | None = None
    """PEFT adapters only in the top this-many blocks; 0: every block; ``None``: the method's default (LoRA and
    DoRA: the top half, rounded up; the other PEFT methods: every block). The frozen blocks below run forward only:
    no backward pass reaches them, so each step costs less."""
    attention_dropout: float | None = None
    """Dropout on the backbone's attention probabilities while training; ``None``: the method's default (0 for the
    PEFT methods: with it on, PyTorch's CPU attention cannot use its fused kernel and keeps every attention matrix
    for the backward pass; the LoRA dropout, hidden dropout and head dropout still regularise), the backbone's own
    value for ``full`` / ``unfreeze-top-k`` / ``probe``."""
    fast_dropout: bool = False
    """Opt-in CPU speed-up (21.0 against 19.9 samples/s in ``make demo``'s LoRA run, which turns it on): while
    training on CPU (fp32), dropout masks come from 32-bit random integers (two per draw of torch's generator, p
    exact to 2**-32) instead of ``bernoulli_``, and attention dropout runs in adapters_kit's own kernel, which keeps
    a one-byte mask instead of the dropped attention matrix (:mod:`adapters_kit.model.dropout`); the same dropout,
    cheaper. It relies on transformers 5's attention registry and turns itself off, with one log line, on other
    versions. ``False``: PyTorch's own dropout."""
    layer_decay: float | None = None
    """Layer-wise learning-rate decay (e.g. 0.8): the head learns at ``lr``, each block below at ``layer_decay``
    times the rate of the block above, embeddings slowest. Off by default; meant for ``full``."""
    lp_ft_stage: str = "lora"
    """``lp-ft``: the adapter that trains after the probe stage (``lora``, ``full`` or any other that trains the
    backbone)."""
    probe_epochs: int = 10
    """``lp-ft``: epochs of the linear-probe stage (on cached features, at the probe's learning rate 1e-2)."""
    pooling: str | None = None
    """How token/frame states become one vector: ``mean``, ``cls``, ``last``; ``None`` = the modality default."""
    head: str = "linear"
    """Classification head: ``linear`` or ``mlp``."""
    head_dropout: float = 0.1
    """Dropout on the pooled features before the head (and inside the MLP head) while training."""
    best_metric: str | None = None
    """Validation metric that picks the best evaluation; its weights are the ones saved (log_loss, ece,
    hamming_loss, mse, rmse and mae are minimised, the others maximised). ``None``: the task's default
    (classification ``f1_macro``, multi-label ``f1_micro``, regression ``rmse``, token classification
    ``entity_f1``, or ``token_accuracy`` for tags without entities)."""
    thresholds: str = "fixed"
    """``multi-label``: ``fixed`` predicts a label at score 0.5; ``tuned`` picks each label's threshold on the
    validation split (the one maximising that label's F1) after training, saves it with the run and uses it for
    test metrics, ``eval``, ``predict`` and exports."""
    eval_steps: int | None = None
    """Also evaluate every this many optimizer steps (evaluation always runs at each epoch's end)."""
    eval_splits: str = "validation"
    """Comma-separated splits evaluated during training (``validation`` always drives model selection)."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without a better ``best_metric``; the best weights are restored."""
    top_k: int = 5
    """k of ``top_k_accuracy``."""
    augment: bool | None = None
    """Training-time augmentation of images (random resized crop, flip) and audio (gain, time shift, noise);
    ``None`` = on for methods that adapt the backbone, off for ``probe`` (its features are computed once)."""
    flip: bool = True
    """Image augmentation includes horizontal flips (turn off where mirroring changes the class: digits, text)."""
    audio_seconds: float | None = None
    """Audio clip length: longer clips are cut, shorter ones padded; ``None`` = the longest training clip rounded
    up to whole seconds, at most 30 (Whisper's window)."""
    probe_solver: str = "adamw"
    """``probe``: ``adamw`` trains the head for ``epochs`` on cached features (curves, checkpoints, early stopping);
    ``lbfgs`` solves it once as a logistic regression (scikit-learn's ``C=1`` objective) with full-batch L-BFGS,
    the fast choice for small sets (linear head only)."""
    cache_features: bool = True
    """``probe``: encode each split once and train the head on the cached features; ``False`` runs the frozen
    backbone on every batch of every epoch instead (the same computation, far slower: the probe benchmark's
    baseline)."""
    adapter: str = "lora"
    """``dann``, ``joint`` and ``autoencoder-pretrain``: the adapter strategy they train (any method but ``probe``
    and ``lp-ft``)."""
    pretrain_data: str | None = None
    """``autoencoder-pretrain``: unlabelled in-domain inputs for the reconstruction stage (a data spec; labels there
    are never read); default: the training split's inputs."""
    pretrain_epochs: int = 1
    """``autoencoder-pretrain``: epochs of the reconstruction stage."""
    mask_ratio: float | None = None
    """``autoencoder-pretrain``: share of tokens (default 0.15) or image/audio cells (default 0.5) corrupted."""
    target_data: str | None = None
    """``dann``: unlabelled target-domain inputs (a data spec; labels there, if any, are never read)."""
    source_data: str | None = None
    """``joint``: the labelled source-task data set that shares the backbone (its own head and labels)."""
    joint_lambda: float = 1.0
    """``joint``: weight of the target-task loss, L = L_S + lambda * L_T."""
    compare_source_only: bool = False
    """``dann``: also train the same adapter without the domain loss at the same budget; its test metrics are
    written as ``test_source_only``."""
    teacher: str | None = None
    """Knowledge distillation: a run folder whose outputs this run (the student) learns from, as well as the gold
    labels (``adapters-kit distill`` sets it). Its outputs on the training inputs are computed once and cached."""
    student_layers: int | None = None
    """Distillation: the student is the teacher's own backbone, adapter merged, keeping this many of its blocks
    (evenly spaced, first and last kept), initialised from the teacher's weights; ``None``: the student is
    ``model``."""
    student_layer_map: str | None = None
    """Distillation: which of the teacher's blocks the student keeps, comma-separated indices from 0 (e.g.
    ``0,2,4``), instead of evenly spaced ones."""
    temperature: float = 2.0
    """Distillation: both models' outputs are softened by this temperature before the student is compared with
    the teacher (KL divergence, scaled by its square)."""
    alpha: float = 0.5
    """Distillation: weight of the gold-label loss beside the loss towards the teacher, on the examples that have
    labels."""
    unlabeled_data: str | None = None
    """Distillation: more inputs (a data spec) that the teacher labels; their own labels, if any, are never
    read."""
    report_to: str | None = None
    """Trackers accelerate logs to, comma-separated (``tensorboard``, ``wandb`` offline, ``mlflow``...); off by
    default. Their files end up in the run folder's ``logs/``."""
    save_steps: int | None = None
    """Also write a checkpoint every this many optimizer steps (one is always written at each epoch's end)."""
    save_total_limit: int = 2
    """Checkpoints kept in the run folder: the newest this many, plus the one of the best evaluation."""
    resume: bool = False
    """Continue from the newest complete checkpoint in ``output`` (same settings as the interrupted run)."""
    resume_from: str | None = None
    """Continue from this checkpoint folder instead."""
    overwrite: bool = False
    """Replace an existing run folder."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes kept with the run (not used by training)."""

    def __post_init__(self):
        """Each field's own range and type; what a method needs of the other fields its recipe checks
        (:func:`adapters_kit.methods.validate`)."""

        def need(cond: bool, msg: str):
            if not cond:
                raise UserError(f"invalid config: {msg}")

        _check_types(self)
        need(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED} (numpy's seed range), got {self.seed}")
        need(self.epochs is None or (isinstance(self.epochs, int) and self.epochs >= 1),
             f"epochs must be a positive integer, got {self.epochs!r}")
        for name in ("batch_size", "eval_batch_size", "grad_accum_steps", "lora_r", "top_k",
                     "unfreeze_k", "probe_epochs", "pretrain_epochs"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                 f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("eval_steps", "early_stopping_patience", "max_steps", "max_length"):
            value = getattr(self, name)
            need(value is None or (isinstance(value, int) and value >= 1),
                 f"{name} must be a positive integer, got {value!r}")
        need(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 < self.val_fraction < 0.5, f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        need(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        need(0 <= self.head_dropout < 1, f"head_dropout must be in [0, 1), got {self.head_dropout}")
        need(self.weight_decay >= 0 and self.max_grad_norm >= 0, "weight_decay and max_grad_norm must be >= 0")
        need(self.max_train_samples is None or self.max_train_samples >= 2,
             f"max_train_samples must be >= 2, got {self.max_train_samples}")
        need(self.max_eval_samples is None or self.max_eval_samples >= 2,
             f"max_eval_samples must be >= 2, got {self.max_eval_samples}")
        need(self.mixed_precision in MIXED_PRECISION,
             f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        need(self.best_metric is None or self.best_metric in METRICS_FOR_BEST,
             f"best_metric must be one of {', '.join(METRICS_FOR_BEST)}, got {self.best_metric!r}")
        need(bool(self.model) and bool(self.data) and bool(self.output), "model, data and output must be set")
        need(self.save_steps is None or (isinstance(self.save_steps, int) and self.save_steps >= 1),
             f"save_steps must be a positive integer, got {self.save_steps!r}")
        need(isinstance(self.save_total_limit, int) and self.save_total_limit >= 1,
             f"save_total_limit must be a positive integer, got {self.save_total_limit!r}")
        need(self.adapter_layers is None or (isinstance(self.adapter_layers, int) and self.adapter_layers >= 0),
             f"adapter_layers must be an integer >= 0 (0: every block), got {self.adapter_layers!r}")
        need(self.attention_dropout is None or 0 <= self.attention_dropout < 1,
             f"attention_dropout must be in [0, 1), got {self.attention_dropout}")
        need(self.mask_ratio is None or 0 < self.mask_ratio < 1, f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        need(self.audio_seconds is None or 0 < self.audio_seconds <= 30,
             f"audio_seconds must be in (0, 30], got {self.audio_seconds}")
        need(self.layer_decay is None or 0 < self.layer_decay <= 1,
             f"layer_decay must be in (0, 1], got {self.layer_decay}")
        need(self.probe_solver in ("adamw", "lbfgs"), f"probe_solver must be adamw or lbfgs, got {self.probe_solver!r}")
        need(self.thresholds in THRESHOLDS,
             f"thresholds must be one of {', '.join(THRESHOLDS)}, got {self.thresholds!r}")
        need(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        need(self.label_separator is None or len(self.label_separator) > 0, "label_separator must not be empty")
        need(self.joint_lambda >= 0, f"joint_lambda must be >= 0, got {self.joint_lambda}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(self.alpha >= 0, f"alpha must be >= 0, got {self.alpha}")
        need(self.student_layers is None or (isinstance(self.student_layers, int) and self.student_layers >= 1),
             f"student_layers must be a positive integer, got {self.student_layers!r}")
        need(not (self.overwrite and (self.resume or self.resume_from)),
             "--resume continues a run and --overwrite starts it again; choose one")

    def input_specs(self) -> tuple[str | None, ...]:
        """Every data or model spec the run reads (the output folder must not hold any of them)."""
        return (self.data, self.model, self.pretrain_data, self.target_data, self.source_data, self.teacher,
                self.unlabeled_data)

    def split_list(self) -> list[str]:
        """``eval_splits`` as a list, validation first."""
        names = [s.strip() for s in self.eval_splits.split(",") if s.strip()]
        return ["validation"] + [s for s in names if s != "validation"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (the original is never mutated)."""
        return dataclasses.replace(self, **changes)


def field_docs() -> dict[str, str]:
    """Field name -> the docstring written under it in this file (the one description of each setting: the CLI's
    help and the configuration reference are made from it)."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig").body
    return {stmt.target.id: inspect.cleandoc(nxt.value.value) for stmt, nxt in zip(body, body[1:])
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)}


def field_kind(name: str) -> str:
    """The base type of config field ``name``: ``bool``, ``int``, ``float``, ``str`` or ``dict``."""
    return kind_of(str(next(f.type for f in dataclasses.fields(TrainConfig) if f.name == name)))


def _check_types(cfg: TrainConfig) -> None:
    """Every field holds its declared type, whether the config came from YAML, flags or Python."""
    for f in dataclasses.fields(cfg):
        problem = type_problem(kind_of(str(f.type)), getattr(cfg, f.name))
        if problem:
            raise UserError(f"invalid config: {f.name} {problem}")


def coerce_field(name: str, value: Any) -> Any:
    """``value`` as config field ``name``'s type, exactly as a YAML value or flag would be (for callers that
    build configs from text of their own, such as the sweep's search space)."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise UserError(f"unknown config key {name!r}; valid keys: {', '.join(sorted(fields))}")
    return coerce(name, fields[name], value)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a config from a mapping (values coerced to each field's type), naming any unknown key."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown config key(s): {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    return TrainConfig(**{k: coerce(k, fields[k], v) for k, v in values.items()})


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML (or JSON) config and apply ``key=value`` overrides (values parsed as YAML scalars).

    >>> load_config(None, ["epochs=3", "method=probe"]).epochs
    3
    """
    return from_dict(given_values(path, overrides))


def given_values(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings a YAML (or JSON) config and ``key=value`` overrides give, flat and not yet coerced: only those
    given (what a student's config puts over its teacher's)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise UserError(f"cannot read config {path}: {e.strerror}; check the path") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise UserError(f"config {path} is not valid YAML ({str(e).splitlines()[0]}); fix the file") from None
        if not isinstance(values, dict):
            raise UserError(f"config {path} must be a mapping of key: value")
    values = flatten_sections(values, path)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"override {item!r} must look like key=value")
        values[key.strip()] = raw
    return values


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
