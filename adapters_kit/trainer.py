"""Notebook facade: ``AdapterTrainer(cfg).train()`` and ``evaluate_run``. It only wires the layers together:
config (:mod:`adapters_kit.train.setup`) -> data and model (:class:`adapters_kit.train.job.Job`) -> the method's
recipe (:mod:`adapters_kit.methods`) through the loop -> evaluation -> the run folder
(:mod:`adapters_kit.runs.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate import Accelerator

from adapters_kit import __version__
from adapters_kit.config import TrainConfig
from adapters_kit.data.splits import load_splits, make_loader, prepare
from adapters_kit.distill.job import DistillJob
from adapters_kit.errors import UserError
from adapters_kit.evaluation.evaluator import evaluate
from adapters_kit.runs.atomic import write_json
from adapters_kit.runs.card import write_card
from adapters_kit.runs.checkpoint import LoadedRun, check_output, load_run, read_json, save_run
from adapters_kit.runs.inference import Classifier
from adapters_kit.runs.output import input_paths
from adapters_kit.runs.report import write_mistakes, write_report
from adapters_kit.train.job import Job
from adapters_kit.train.result import TrainResult
from adapters_kit.train.setup import make_accelerator, resolve_config

__all__ = ["AdapterTrainer", "evaluate_run", "make_accelerator", "resolve_config"]


class AdapterTrainer:
    """Train, evaluate and save one run, as the CLI does.

    >>> from adapters_kit import AdapterTrainer, TrainConfig, load
    >>> trainer = AdapterTrainer(TrainConfig(model="minilm-l6", method="probe", data="bbc-news",
    ...                                      output="runs/bbc"))                     # doctest: +SKIP
    >>> trainer.train()["test"]["accuracy"]                                        # doctest: +SKIP
    0.97...
    >>> load("runs/bbc")(["Shares rose sharply after the results"])                 # doctest: +SKIP
    [{'label': 'business', 'score': 0.9...}]
    """

    def __init__(self, cfg: TrainConfig, accelerator: Accelerator | None = None):
        self.cfg = resolve_config(cfg)
        self.accelerator = accelerator or make_accelerator(self.cfg)
        self.model = None
        self.run: LoadedRun | None = None

    def train(self) -> dict[str, Any]:
        """Run the whole job; returns ``metrics.json``'s content: ``{split: {metric: value}}``."""
        acc = self.accelerator
        # The main process first: replacing a finished run removes its old checkpoints, which several processes
        # removing at once would race over; the others then find the folder already cleared.
        with acc.main_process_first():
            resume_from = check_output(self.cfg.output, self.cfg.overwrite, self.cfg.resume, self.cfg.resume_from,
                                       inputs=input_paths(*self.cfg.input_specs()))
        kind = DistillJob if self.cfg.teacher else Job  # a student learns from a teacher run's outputs as well
        job = kind(self.cfg, acc, resume_from, variant=lambda twin: AdapterTrainer(twin, acc).train())
        self.cfg = cfg = job.cfg  # as the modality fitted it (audio clip length)
        job.print_data()
        model = job.build_model()
        counts = model.trainable_parameters()  # (trainable, total): printed now, recorded in run_info.json
        self._print_model(counts)
        acc.init_trackers("adapters_kit", config={k: v for k, v in cfg.to_dict().items()
                                                  if isinstance(v, (int, float, str, bool))})
        result = job.run(model)
        metrics = job.final_metrics(model, result)
        acc.log({f"{split}/{k}": v for split, m in metrics.items() if split != "train" for k, v in m.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=result.best_step)
        # Trackers flush and close before the run folder (which takes their files) is written. Not end_training():
        # that also tears down the process group, which saving still needs.
        for tracker in acc.trackers:
            tracker.finish()
        acc.trackers = []
        metrics.update(job.recipe.extra_metrics(job, metrics))
        self.model = acc.unwrap_model(model).eval()
        self.run = LoadedRun(self.model, job.processor, cfg, job.splits.labels, {}, job.modality)
        self._save(job, model, metrics, result, counts)
        acc.wait_for_everyone()
        return metrics

    def _print_model(self, counts: tuple[int, int]) -> None:
        cfg, acc = self.cfg, self.accelerator
        trainable, total = counts
        acc.print(f"{cfg.method} on {cfg.model}: {trainable:,} trainable of {total:,} parameters "
                  f"({100 * trainable / total:.2f}%); {acc.num_processes} process(es) on {acc.device}, "
                  f"mixed precision {acc.mixed_precision}; batch {cfg.batch_size} per process x "
                  f"{acc.num_processes} process(es) x {cfg.grad_accum_steps} accumulation step(s) = "
                  f"{cfg.batch_size * acc.num_processes * cfg.grad_accum_steps} examples per optimizer step")

    def _save(self, job: Job, model, metrics: dict[str, Any], result: TrainResult, counts: tuple[int, int]) -> None:
        """The run folder, complete or absent: report and card are written before it takes its name."""
        cfg, acc = self.cfg, self.accelerator
        # Every process takes part: under FSDP / ZeRO-3 this gathers the sharded weights (onto the main process).
        state = acc.get_state_dict(model)
        if not acc.is_main_process:
            return
        inner = acc.unwrap_model(model)
        trainable, total = counts
        splits = job.splits
        info = {"adapters_kit_version": __version__, "backbone_path": job.path, "modality": job.modality_name,
                "labels": list(splits.labels.names), "input_column": splits.input_column,
                "pair_column": splits.pair_column, "label_column": splits.label_column,
                "data_report": splits.report, "trainable_parameters": trainable, "total_parameters": total,
                "history": result.history}
        trained, blocks = inner.trained_blocks()
        if trained:
            info.update(trained_blocks=trained, blocks=blocks)
        info.update(job.run_info(inner))
        try:
            # The card after the adapter's save, which removes PEFT's own stub README.
            save_run(cfg.output, model=inner, processor=job.processor, cfg=cfg, labels=splits.labels,
                     metrics=metrics, info=info, log=result.log, state=state,
                     finish=lambda tmp: (job.save_extras(tmp), write_report(tmp),
                                         write_card(tmp, load_id=str(cfg.output))))
        except OSError as e:  # disk full, permissions changed mid-run: the atomic write left nothing behind
            raise UserError(f"could not write the run folder {cfg.output} ({e.strerror or e}); nothing was "
                            f"written (checkpoints, if any, are kept): free space or choose another folder "
                            f"and run again") from None

    def classifier(self) -> Classifier:
        """The in-memory trained model as a :class:`Classifier` (what ``load(output)`` gives back)."""
        if self.run is None:
            raise RuntimeError("call train() first")
        return Classifier(self.run)


def evaluate_run(directory: str | Path, data: str, split: str = "test", batch_size: int = 64,
                 text_column: str | None = None, label_column: str | None = None, errors: int = 0,
                 accelerator: Accelerator | None = None, text_pair_column: str | None = None) -> dict[str, Any]:
    """Evaluate a saved run on ``split`` of ``data``; record the result in the run's ``metrics.json`` and redraw
    its report. With ``errors`` > 0, also write the most confident mistakes to ``errors_<split>.csv``.

    Columns default to the ones the run was trained with.
    """
    run = load_run(directory)
    path = Path(directory) / "metrics.json"
    # Read (and so checked) before the evaluation runs: a corrupt file is found in seconds, not after it.
    everything = read_json(path, dict) if path.exists() else {}
    cfg = run.data_config(data, text_column, label_column, text_pair_column)
    acc = accelerator or Accelerator()
    with acc.main_process_first():  # a lone file (eval --data new.csv) is the test split, nothing carved from it
        splits = load_splits(cfg, run.modality, labels=run.labels, lone="test")
    ds = splits.split(split, data)
    prepared = prepare(ds.add_column("index", list(range(len(ds)))), run.modality, run.processor)
    loader = make_loader(prepared, run.modality.collator(run.processor), batch_size, shuffle=False,
                         group_by_length=cfg.group_by_length)
    metrics = evaluate(acc.prepare(run.model), loader, acc, run.task(), errors=errors)
    mistakes = metrics.pop("mistakes", None)
    if acc.is_main_process:
        everything[split] = metrics
        write_json(path, everything)
        write_report(directory)
        if mistakes is not None:
            out = write_mistakes(Path(directory) / f"errors_{split}.csv", mistakes, ds["input"], run.labels.names)
            metrics["errors_file"] = str(out)
    return metrics

