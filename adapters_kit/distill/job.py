"""A student's training job: the teacher's data and label space, the teacher's outputs riding in every training batch,
and (``student_layers``) a base made of the teacher's own blocks.

:func:`student_config` turns a teacher run folder and the settings given into the student's config (the data and
columns default to the teacher's); :class:`DistillJob` is the :class:`adapters_kit.train.job.Job` that trains it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from adapters_kit.builtin.resolve import resolve_model
from adapters_kit.config import TrainConfig, from_dict
from adapters_kit.data.splits import Splits, add_rows, load_inputs, load_splits, prepare
from adapters_kit.distill.speed import BATCH_SIZE, examples_per_second, input_batches
from adapters_kit.distill.student import depth_field, layer_map, student_base, teacher_depth
from adapters_kit.distill.teacher import teacher_key, teacher_outputs
from adapters_kit.errors import UserError
from adapters_kit.methods.adapters import Full
from adapters_kit.methods.distillation import LABELLED, TEACHER, Distillation
from adapters_kit.methods.recipe import adapting_names
from adapters_kit.runs.checkpoint import LoadedRun, link_tree, load_run, read_json, read_run_config
from adapters_kit.runs.output import RUN_INFO, RUN_MARKER
from adapters_kit.tasks.base import DEFAULT_TASK
from adapters_kit.train.job import Job

INHERITED = ("data", "task", "text_column", "text_pair_column", "label_column", "label_separator", "val_fraction",
             "max_train_samples", "max_eval_samples", "max_length", "head", "seed", "eval_splits", "best_metric",
             "thresholds", "loss", "top_k", "flip", "audio_seconds")
"""The teacher's settings a student keeps unless they are given: what data it reads and how it is scored."""
STUDENT_METHOD = Full.name
"""A student's default method: every weight of the (smaller) student trains, as in DistilBERT."""
SPEED_EXAMPLES = 256
"""Test inputs on which the teacher's and the student's inference speeds are measured after training."""
BASE = "base"
"""The run folder's copy of a layer-pruned student's base checkpoint."""


def teacher_config(teacher: str | Path) -> TrainConfig:
    """A teacher run folder's config; a folder that is not a run is refused in one line."""
    root = Path(teacher)
    if not (root / RUN_MARKER).is_file() or not (root / RUN_INFO).is_file():
        raise UserError(f"teacher {root} is not a run folder (no {RUN_MARKER} / {RUN_INFO}); give the --output "
                        f"folder of a training run")
    return read_run_config(root)


def student_config(teacher: str | Path, **settings: Any) -> TrainConfig:
    """The student's config: ``settings`` (config fields, as flags or YAML give them) over the teacher's data and
    scoring settings (:data:`INHERITED`). Without ``model``, ``student_layers`` or ``student_layer_map`` the
    student keeps half the teacher's blocks (rounded up)."""
    parent = teacher_config(teacher)
    values: dict[str, Any] = {k: getattr(parent, k) for k in INHERITED}
    values.update(model=parent.model, method=STUDENT_METHOD)
    values.update({k: v for k, v in settings.items() if v is not None})
    values["teacher"] = str(teacher)
    pruned = values.get("student_layers") is not None or values.get("student_layer_map") is not None
    if values["model"] != parent.model and pruned:
        raise UserError(f"--student {values['model']} and --student-layers / --student-layer-map both choose the "
                        f"student; give one of them")
    if settings.get("model") is None and not pruned:
        values["student_layers"] = math.ceil(_depth(parent.model) / 2)
    return from_dict(values)


def _depth(model: str) -> int:
    path, _ = resolve_model(model)
    config = AutoConfig.from_pretrained(path)
    return getattr(config, depth_field(config))


def check_student(cfg: TrainConfig, teacher: LoadedRun) -> None:
    """Refuse, before any work, a student this teacher cannot teach."""
    if teacher.task().pooling is not None:
        raise UserError(f"teacher {cfg.teacher} is a {teacher.task().name} run, which scores every token; its "
                        f"students are not supported yet: distil a run that predicts one output per input")
    if cfg.method not in adapting_names():
        raise UserError(f"invalid config: a student trains its backbone on the teacher's outputs: --method must be "
                        f"one of {', '.join(adapting_names())}, got {cfg.method}")


class DistillJob(Job):
    """The job of a student run (``cfg.teacher`` set)."""

    def __init__(self, cfg: TrainConfig, accelerator, resume_from=None, variant=None):
        self.teacher = load_run(cfg.teacher)
        check_student(cfg, self.teacher)
        self.teacher_key = teacher_key(self.teacher)  # hashed once: names the student base and the outputs cache
        self.keep: list[int] | None = None
        self.depth = teacher_depth(self.teacher) if cfg.student_layers or cfg.student_layer_map else None
        if self.depth is not None:
            self.keep = layer_map(self.depth, cfg.student_layers, cfg.student_layer_map)
            cfg = cfg.replace(pooling=cfg.pooling or self.teacher.cfg.pooling, student_layers=len(self.keep))
        cfg = cfg.replace(task=self.teacher.cfg.task or DEFAULT_TASK)
        self.teacher_figures: dict[str, Any] = {}
        super().__init__(cfg, accelerator, resume_from, variant)

    def backbone_source(self, cfg: TrainConfig) -> tuple[str, str]:
        modality = self.teacher.info.get("modality", "text")
        if self.keep is not None:
            with self.acc.main_process_first():
                return str(student_base(self.teacher, self.keep, self.teacher_key)), modality
        path, kind = resolve_model(cfg.model)
        if kind != modality:
            raise UserError(f"student {cfg.model} takes {kind} but teacher {cfg.teacher} reads {modality}; choose a "
                            f"{modality} student")
        return path, kind

    def load_data(self, cfg: TrainConfig) -> Splits:
        """The splits read with the teacher's label space (a label the teacher never learnt cannot be taught)."""
        return load_splits(cfg, self.modality, labels=self.teacher.labels)

    def build_model(self):
        model = super().build_model()
        self.objective = Distillation(self.task, self.cfg.temperature, self.cfg.alpha)
        if self.keep is not None and self.cfg.head == self.teacher.cfg.head:
            model.head.load_state_dict(self.teacher.model.head.state_dict())  # the teacher's head on its own blocks
        return model

    def prepared(self) -> Any:
        """Every split as model inputs; the training split carries the teacher's outputs and, after it, the
        teacher-labelled inputs of ``unlabeled_data``."""
        if self._prepared is None:
            splits = dict(self.splits.datasets)
            with self.acc.main_process_first():
                splits["train"] = self._taught(splits["train"])
                self._prepared = prepare(splits, self.modality, self.processor)
        return self._prepared

    def _taught(self, train: Any) -> Any:
        cfg = self.cfg
        outputs, hit = teacher_outputs(self.teacher, train, cfg.eval_batch_size, self.teacher_key)
        self.print(f"teacher outputs for {len(train)} training examples {'from the cache' if hit else 'computed'}")
        taught = train.add_column(TEACHER, outputs.tolist()).add_column(LABELLED, [1] * len(train))
        self.teacher_figures["labelled_examples"] = len(train)
        if cfg.unlabeled_data:
            extra = load_inputs(cfg.unlabeled_data, self.modality, cfg.text_column, cfg.text_pair_column)
            more, hit = teacher_outputs(self.teacher, extra, cfg.eval_batch_size, self.teacher_key)
            self.print(f"teacher outputs for {len(extra)} inputs of {cfg.unlabeled_data} "
                       f"{'from the cache' if hit else 'computed'}")
            extra = extra.add_column(TEACHER, more.tolist()).add_column(LABELLED, [0] * len(extra))
            taught = add_rows(taught, extra)
            self.teacher_figures["teacher_labelled_examples"] = len(extra)
        return taught

    def run_info(self, model) -> dict[str, Any]:
        """The teacher: where it is, what it was, its test metrics, and both models' inference speeds."""
        teacher, cfg = self.teacher, self.cfg
        metrics_path = Path(cfg.teacher) / "metrics.json"
        metrics = read_json(metrics_path, dict) if metrics_path.exists() else {}
        info = {"run": str(cfg.teacher), "model": teacher.cfg.model, "method": teacher.cfg.method,
                "parameters": sum(p.numel() for p in teacher.model.parameters()),
                "test": {k: v for k, v in metrics.get("test", {}).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)},
                "temperature": cfg.temperature, "alpha": cfg.alpha, **self.teacher_figures}
        if self.keep is not None:
            info.update(blocks_kept=self.keep, teacher_blocks=self.depth)
        info.update(self._speeds(model))
        return {"teacher": info}

    def _speeds(self, model) -> dict[str, Any]:
        split = "test" if "test" in self.splits.datasets else "validation"
        inputs = self.splits.datasets[split]
        inputs = inputs.select(range(min(SPEED_EXAMPLES, len(inputs))))
        device = next(model.parameters()).device
        student = [{k: v.to(device) for k, v in b.items()}
                   for b in input_batches(inputs, self.modality, self.processor)]
        teacher = self.teacher.model.to(device)
        taught = [{k: v.to(device) for k, v in b.items()}
                  for b in input_batches(inputs, self.teacher.modality, self.teacher.processor)]
        fast, slow = examples_per_second([(model, student), (teacher, taught)])
        return {"speed": {"split": split, "examples": len(inputs), "batch_size": BATCH_SIZE,
                          "student_examples_per_second": fast, "teacher_examples_per_second": slow,
                          "speedup": fast / slow}}

    def save_extras(self, folder: Path) -> None:
        if self.keep is not None:  # the pruned base travels with the run (resolve_base finds it there)
            link_tree(Path(self.path), folder / BASE)
