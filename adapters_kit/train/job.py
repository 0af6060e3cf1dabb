"""One training job from a resolved config: data -> model -> the recipe's stages through the loop -> final metrics.

:class:`Job` is what the recipes see as their :class:`adapters_kit.methods.recipe.Context`: it owns the loaded
splits, the processor and the accelerator, and turns a recipe's requests (feature loaders, an unlabelled set, a
second data set's batch stream, a stage to train) into data, loaders and loop runs.
"""

from __future__ import annotations

import logging
import resource
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from accelerate import Accelerator
from accelerate.utils import set_seed

from adapters_kit.builtin.resolve import resolve_model
from adapters_kit.config import TrainConfig
from adapters_kit.data.splits import Splits, load_inputs, load_splits, make_loader, prepare
from adapters_kit.errors import UserError
from adapters_kit.evaluation.evaluator import collect_outputs, evaluate
from adapters_kit.methods import get_recipe
from adapters_kit.modalities import get_modality
from adapters_kit.model.features import backbone_fingerprint, cached_encode, feature_loader
from adapters_kit.model.heads import build_head
from adapters_kit.model.modeling import AdapterClassifier, build_model
from adapters_kit.tasks import get_task
from adapters_kit.tasks.base import DEFAULT_TASK
from adapters_kit.train.loop import train as train_loop
from adapters_kit.train.objectives import BatchStream
from adapters_kit.train.result import TrainResult
from adapters_kit.train.resume import Checkpointing, stage_of
from adapters_kit.train.setup import load_processor

log = logging.getLogger(__name__)


def check_task(cfg: TrainConfig, task: Any, recipe: Any) -> None:
    """Refuse, before any training, settings the run's task cannot take."""
    if cfg.best_metric not in task.selectable:
        raise UserError(f"invalid config: best_metric {cfg.best_metric} is not a {task.name} metric; choose one of: "
                        f"{', '.join(task.selectable)}")
    if cfg.thresholds == "tuned" and not hasattr(task, "tuned"):
        raise UserError(f"invalid config: --thresholds tuned sets multi-label decision thresholds; this run's task "
                        f"is {task.name}")
    if recipe.pooled and task.pooling is not None:
        raise UserError(f"invalid config: --method {cfg.method} works on one pooled vector per input; task "
                        f"{task.name} scores every token: choose another method (the probe, a PEFT adapter, "
                        f"unfreeze-top-k, full)")
    if cfg.probe_solver == "lbfgs" and not task.closed_form:
        raise UserError(f"invalid config: --probe-solver lbfgs solves a logistic regression, which does not fit "
                        f"task {task.name}; use --probe-solver adamw")
    if recipe.solves_head and not task.closed_form:
        raise UserError(f"invalid config: --method {cfg.method} solves its head as a logistic regression, which does "
                        f"not fit task {task.name}; choose another method")


def check_label_counts(cfg: TrainConfig, splits: Splits, recipe: Any) -> None:
    """Refuse training data in which a label has fewer examples than the method needs."""
    if recipe.min_per_label <= 1:
        return
    counts = Counter(splits.datasets["train"]["label"])
    short = [(name, counts.get(i, 0)) for i, name in enumerate(splits.labels.names)
             if counts.get(i, 0) < recipe.min_per_label]
    if short:
        listed = ", ".join(f"{name!r} ({n})" for name, n in short[:5])
        raise UserError(f"--method {cfg.method} needs at least {recipe.min_per_label} training examples of every "
                        f"label; too few of {listed}: add examples or use another method")


class Job:
    """The run's data and settings, loaded once; ``run`` trains a model through the recipe's stages."""

    def __init__(self, cfg: TrainConfig, accelerator: Accelerator, resume_from: Path | None = None,
                 variant: Callable[[TrainConfig], dict[str, Any]] | None = None):
        self.acc, self.resume_from, self._variant = accelerator, resume_from, variant
        self.recipe = get_recipe(cfg.method)
        self.path, self.modality_name = self.backbone_source(cfg)
        self.modality = get_modality(self.modality_name, cfg)
        processor = load_processor(self.modality, self.path)
        with accelerator.main_process_first():
            self.splits: Splits = self.load_data(cfg)
        self.processor, cfg = self.modality.fit(processor, self.splits.datasets["train"]["input"])
        self.task = get_task(self.splits.task, self.splits.labels, cfg)
        # The settings the data decided are recorded: the task, its selection metric, a detected pair column, and
        # the pooling and caching a task that scores every token needs.
        self.cfg = cfg.replace(task=self.splits.task, best_metric=cfg.best_metric or self.task.best_metric,
                               text_pair_column=self.splits.pair_column, pooling=self.task.pooling or cfg.pooling,
                               cache_features=cfg.cache_features and self.task.pooling is None)
        self.modality.cfg = self.cfg
        check_task(self.cfg, self.task, self.recipe)
        check_label_counts(self.cfg, self.splits, self.recipe)
        self.collate = self.modality.collator(self.processor)
        missing = [s for s in self.cfg.split_list() if s not in self.splits.datasets]
        if missing:
            raise UserError(f"eval_splits names {', '.join(missing)}, which the data lacks; splits are: "
                            f"{', '.join(self.splits.datasets)}")
        self.objective = None
        self.stage_figures: dict[str, Any] = {}
        self._prepared: Any = None  # a DatasetDict
        self._inputs: dict[str, Any] | None = None
        self._features: dict[str, Any] | None = None

    def backbone_source(self, cfg: TrainConfig) -> tuple[str, str]:
        """(where the backbone loads from, its modality)."""
        return resolve_model(cfg.model)

    def load_data(self, cfg: TrainConfig) -> Splits:
        """The run's splits, label space fitted on its training split."""
        return load_splits(cfg, self.modality)

    def print(self, text: str) -> None:
        self.acc.print(text)

    def run_info(self, model) -> dict[str, Any]:
        """Entries this kind of job adds to ``run_info.json`` (after training, with the trained model)."""
        return {}

    def save_extras(self, folder: Path) -> None:
        """Files this kind of job adds to the run folder (written before the folder takes its name)."""

    # The model and its training.

    def build_model(self) -> AdapterClassifier:
        """The recipe's objective first (it may add heads), then backbone + adapter + head, seeded."""
        self.objective = self.recipe.objective(self)
        set_seed(self.cfg.seed)
        backbone = self.modality.load_backbone(self.path, self.processor)
        model = build_model(self.cfg, backbone, self.task.num_outputs,
                            self.objective.aux_heads if self.objective else None)
        self.task.init_head(model.head)
        return model

    def run(self, model: AdapterClassifier) -> TrainResult:
        """Every stage of the recipe in order; the main (last) one's result. A run resumed from the main stage's
        checkpoint skips the pre-stages (their weights are in it); one stopped in a pre-stage resumes that stage."""
        *pre, main = self.recipe.stages(self.cfg)
        first = 0
        if self.resume_from is not None:
            names = [s.name for s in pre]
            resuming = stage_of(self.resume_from)
            if resuming and resuming not in names:
                raise UserError(f"checkpoint {self.resume_from} belongs to a {resuming!r} stage, which "
                                f"--method {self.cfg.method} does not run; resume from one of this run's checkpoints")
            first = names.index(resuming) if resuming else len(pre)
        for stage in pre[first:]:
            self.stage_figures[stage.key] = stage.run(self, model)
        return main.run(self, model)

    def fit(self, model, train_loader, eval_loaders: dict, *, cfg: TrainConfig | None = None, objective=None,
            stage: str = "") -> TrainResult:
        """One stage through the loop, with the run's checkpoints (named for ``stage``), resuming from the run's
        checkpoint when it belongs to that stage."""
        run = self.cfg
        resume = self.resume_from if self.resume_from is not None and stage_of(self.resume_from) == stage else None
        checkpoints = Checkpointing(run.output, run.save_steps, run.save_total_limit, run.to_dict(), resume, stage,
                                    self.stage_figures)
        # Re-seed: whether features came from the cache or were encoded (which draws random numbers while saving
        # them) must not change the dropout masks and so the result.
        set_seed(run.seed)
        return train_loop(cfg or run, model, train_loader, eval_loaders, self.acc, self.task, checkpoints,
                          objective)

    def evaluate(self, model, loader) -> dict[str, Any]:
        return evaluate(model, loader, self.acc, self.task)

    def final_metrics(self, model, result: TrainResult) -> dict[str, Any]:
        """``{split: metrics}`` of the whole model on raw inputs. Validation was scored with the best weights
        already, unless training read cached features or the decision thresholds were tuned since."""
        tuned = self.cfg.thresholds == "tuned"
        if tuned:
            self.tune_thresholds(model)
        metrics: dict[str, Any] = {} if result.on_features or tuned else {"validation": result.best_metrics}
        metrics.update({s: self.evaluate(model, loader) for s, loader in self.input_loaders().items()
                        if s != "train" and s not in metrics})
        metrics["train"] = self.train_figures(result)
        return metrics

    def tune_thresholds(self, model) -> None:
        """Per-label decision thresholds chosen on the validation split (never on test), kept in the label space
        that the run folder saves."""
        outputs, targets = collect_outputs(model, self.input_loaders()["validation"], self.acc)
        self.splits.labels = self.task.tuned(outputs, targets)
        self.task = get_task(self.splits.task, self.splits.labels, self.cfg)
        self.print(f"decision thresholds tuned on validation ({len(targets)} examples): "
                   f"{', '.join(f'{t:.2f}' for t in self.splits.labels.params['thresholds'][:10])}"
                   f"{' ...' if len(self.splits.labels) > 10 else ''}")

    def train_figures(self, result: TrainResult) -> dict[str, Any]:
        """``metrics.json``'s ``train`` entry: training-only timing (no evaluation), selection, processes, and
        each pre-stage's figures."""
        seconds = max(result.train_seconds, 1e-9)
        figures = {"train_seconds": result.train_seconds, "train_samples": result.train_samples,
                   "samples_per_second": result.train_samples / seconds,
                   "tokens_per_second": result.train_tokens / seconds if result.train_tokens else None,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "num_processes": self.acc.num_processes, "best_epoch": result.best_epoch,
                   "best_step": result.best_step, "stopped_early": result.stopped_early}
        figures.update(self.stage_figures)
        return figures

    def variant(self, **changes: Any) -> dict[str, Any]:
        """The same job with ``changes``, trained in a hidden sibling folder that is removed afterwards."""
        out = Path(self.cfg.output).resolve()
        twin = self.cfg.replace(**changes, output=str(out.parent / f".{out.name}.variant"), overwrite=True,
                                resume=False, resume_from=None, save_steps=None)
        try:
            return self._variant(twin)
        finally:
            if self.acc.is_main_process:
                shutil.rmtree(twin.output, ignore_errors=True)

    # Data, as the recipe's stages ask for it.

    def prepared(self) -> Any:
        """Every split as model inputs (the modality's preprocessing), computed once."""
        if self._prepared is None:
            with self.acc.main_process_first():
                self._prepared = prepare(self.splits.datasets, self.modality, self.processor)
        return self._prepared

    def input_loaders(self) -> dict[str, Any]:
        """Loaders of model inputs for every split. A frozen backbone's head trains on features in plain shuffled
        order (cached or not: the same result either way); evaluation runs longest first for every method."""
        if self._inputs is None:
            cfg = self.cfg
            frozen = self.recipe.adapter(cfg).frozen_backbone
            self._inputs = {s: make_loader(ds, self.collate, cfg.batch_size if s == "train" else cfg.eval_batch_size,
                                           shuffle=s == "train", seed=cfg.seed,
                                           group_by_length=cfg.group_by_length and (s != "train" or not frozen))
                            for s, ds in self.prepared().items()}
        return self._inputs

    def feature_loaders(self, model) -> dict[str, Any]:
        """Encode the splits training reads once (eval mode, so exactly what inference computes), or find the
        features of an earlier run with the same weights, pooling, preprocessing and data in the cache."""
        if self._features is None:
            cfg, acc = self.cfg, self.acc
            model.to(acc.device)
            key = backbone_fingerprint(model) + self.modality.signature(self.processor)
            # Only what training reads: the final metrics of every split come from the whole model on raw inputs.
            wanted = {"train", "validation", *cfg.split_list()}
            features = {}
            for s, ds in ((s, ds) for s, ds in self.prepared().items() if s in wanted):
                plain = make_loader(ds, self.collate, cfg.eval_batch_size, shuffle=False)
                features[s], hit = cached_encode(model, ds, plain, acc.device, key)
                acc.print(f"{s}: features {'from the cache' if hit else 'encoded once'} ({len(ds)} examples)")
            self._features = {s: feature_loader(f, cfg.batch_size if s == "train" else cfg.eval_batch_size,
                                                shuffle=s == "train", seed=cfg.seed) for s, f in features.items()}
        return self._features

    def unlabelled(self, spec: str | None, seed_offset: int):
        inputs = self._training_inputs(spec, labelled=False)[0] if spec else self.prepared()["train"]
        return make_loader(inputs, self.collate, self.cfg.batch_size, shuffle=True, seed=self.cfg.seed + seed_offset)

    def stream(self, spec: str, labelled: bool) -> tuple[BatchStream, int]:
        """A second data set's training inputs as an endless stream, on its own shuffling seed (so the main
        loader's order is the same as without it)."""
        cfg = self.cfg
        prepared, num_labels = self._training_inputs(spec, labelled)
        raw = make_loader(prepared, self.collate, cfg.batch_size, shuffle=True, seed=cfg.seed + 1)
        return BatchStream(self.acc.prepare(raw), raw.generator, cfg.seed + 1), num_labels

    def _training_inputs(self, spec: str, labelled: bool) -> tuple[Any, int]:
        """(another data set's training inputs, preprocessed as training inputs are; its number of labels, 0 for
        unlabelled inputs, whose labels are never read)."""
        cfg = self.cfg
        with self.acc.main_process_first():
            if labelled:
                # The source task of ``joint`` is classification (its own head, cross-entropy).
                other = load_splits(cfg.replace(data=spec, text_column=None, label_column=None, task=DEFAULT_TASK,
                                                text_pair_column=None, max_train_samples=None), self.modality)
                inputs, num_labels = other.datasets["train"], len(other.labels)
            else:
                inputs, num_labels = load_inputs(spec, self.modality, cfg.text_column, cfg.text_pair_column), 0
            return prepare(inputs, self.modality, self.processor, train=True), num_labels

    def new_head(self, dim: int, num_labels: int):
        return build_head(self.cfg.head, dim, num_labels, self.cfg.head_dropout)

    def print_data(self) -> None:
        """One line on the data: split sizes, classes, duplicates dropped, the columns used."""
        r, splits = self.splits.report, self.splits
        sizes = ", ".join(f"{s} {n}" for s, n in r["sizes"].items())
        dups = sum(r["duplicates_dropped"].values())
        how = "detected from the label column; --task to choose" if r.get("task_detected") else "as given"
        self.acc.print(f"task: {splits.task} ({how})")
        pair = f" pair={splits.pair_column!r}" if splits.pair_column else ""
        self.acc.print(f"data: {sizes}; {len(splits.labels)} {self.task.outputs_word}; {dups} duplicate input(s) "
                       f"dropped ({', '.join(f'{s} {n}' for s, n in r['duplicates_dropped'].items())}); "
                       f"columns input={splits.input_column!r}{pair} label={splits.label_column!r}")
        skipped = {k: sum(v.values()) for k, v in r.items() if k in ("null_rows", "unknown_labels")}
        if any(skipped.values()):
            log.warning("skipped rows: %s", skipped)
