"""Notebook facade: ``AdapterTrainer(cfg).train()`` and ``evaluate_run``. It only wires the layers together."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import set_seed
from transformers import AutoConfig

from adapters_kit import __version__
from adapters_kit.adapters import ADAPTERS, build_adapter
from adapters_kit.atomic import write_json
from adapters_kit.card import write_card
from adapters_kit.catalog import fit_max_length, resolve_model
from adapters_kit.checkpoint import LoadedRun, check_output, load_run, read_json, save_run, tracker_dir
from adapters_kit.config import OBJECTIVE_METHODS, WRAPPING_METHODS, TrainConfig
from adapters_kit.data import load_inputs, load_splits, make_loader, prepare
from adapters_kit.errors import UserError
from adapters_kit.evaluation import evaluate
from adapters_kit.features import backbone_fingerprint, cached_encode, feature_loader
from adapters_kit.heads import HEADS, POOLERS, build_head
from adapters_kit.inference import Classifier
from adapters_kit.loop import TrainResult
from adapters_kit.loop import train as train_loop
from adapters_kit.modalities import get_modality
from adapters_kit.modeling import build_model
from adapters_kit.objectives import BatchStream, DomainAdversarial, Joint, Objective
from adapters_kit.output import input_paths
from adapters_kit.pretrain import pretrain
from adapters_kit.report import write_mistakes, write_report
from adapters_kit.resume import Checkpointing
from adapters_kit.solvers import fit_logistic

log = logging.getLogger(__name__)


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill method-dependent defaults (lr, epochs, pooling); check every registered name before work starts."""
    if cfg.method not in ADAPTERS and cfg.method not in WRAPPING_METHODS:
        raise UserError(f"unknown method {cfg.method!r}; choose one of: "
                        f"{', '.join(sorted([*ADAPTERS.names(), *WRAPPING_METHODS]))}")
    adapter = build_adapter(cfg.adapter_method)
    HEADS.get(cfg.head)
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
        attention_dropout = adapter.default_attention_dropout
    return cfg.replace(lr=cfg.lr or adapter.default_lr, epochs=cfg.epochs or adapter.default_epochs,
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


def _load_processor(modality, path: str):
    try:
        return modality.load_processor(path)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if os.path.isdir(path) else ("; fetch it once where the Hub is reachable (it is then cached) "
                                                "or pass a local checkpoint folder")
        raise UserError(f"cannot load model {path!r}: {first[:300]}{hint}") from None


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
        self.probe_stage: dict | None = None
        self.pretrain_stage: dict | None = None

    def train(self) -> dict[str, Any]:
        """Run the whole job; returns ``metrics.json``'s content: ``{split: {metric: value}}``."""
        cfg, acc = self.cfg, self.accelerator
        resume_from = check_output(cfg.output, cfg.overwrite, cfg.resume, cfg.resume_from,
                                   inputs=input_paths(*cfg.input_specs()))
        path, modality_name = resolve_model(cfg.model)
        modality = get_modality(modality_name, cfg)
        processor = _load_processor(modality, path)
        with acc.main_process_first():
            splits = load_splits(cfg, modality)
        processor, cfg = modality.fit(processor, splits.datasets["train"]["input"])
        self.cfg = cfg
        names = splits.labels.names
        missing = [s for s in cfg.split_list() if s not in splits.datasets]
        if missing:
            raise UserError(f"eval_splits names {', '.join(missing)}, which the data lacks; splits are: "
                            f"{', '.join(splits.datasets)}")
        self._print_data(splits)
        objective = self._objective(modality, processor)
        set_seed(cfg.seed)
        model = build_model(cfg, modality.load_backbone(path, processor), len(names),
                            objective.aux_heads if objective else None)
        trainable, total = model.trainable_parameters()
        acc.print(f"{cfg.method} on {cfg.model}: {trainable:,} trainable of {total:,} parameters "
                  f"({100 * trainable / total:.2f}%); {acc.num_processes} process(es) on {acc.device}, "
                  f"mixed precision {acc.mixed_precision}; batch {cfg.batch_size} per process x "
                  f"{acc.num_processes} process(es) x {cfg.grad_accum_steps} accumulation step(s) = "
                  f"{cfg.batch_size * acc.num_processes * cfg.grad_accum_steps} examples per optimizer step")
        acc.init_trackers("adapters_kit", config={k: v for k, v in cfg.to_dict().items()
                                                  if isinstance(v, (int, float, str, bool))})
        token_loaders, loaders = self._loaders(model, splits, modality, processor, resuming=resume_from is not None)
        # Re-seed: whether probe features came from the cache or were encoded (which draws random numbers while
        # saving them) must not change the dropout masks and so the result.
        set_seed(cfg.seed)
        checkpoints = Checkpointing(cfg.output, cfg.save_steps, cfg.save_total_limit, cfg.to_dict(), resume_from)
        if cfg.probe_solver == "lbfgs":
            result = self._solve_probe(model, loaders, names)
        else:
            result = train_loop(cfg, model, loaders["train"], {s: loaders[s] for s in cfg.split_list()}, acc, names,
                                checkpoints, objective)
        # Validation was scored with the best weights already, unless it ran on cached features: the final
        # numbers (speed included) always come from the whole model on the raw inputs.
        metrics: dict[str, Any] = {"validation": result.best_metrics} if loaders is token_loaders else {}
        metrics.update({s: evaluate(model, loader, acc, names, top_k=cfg.top_k)
                        for s, loader in token_loaders.items() if s != "train" and s not in metrics})
        metrics["train"] = self._train_figures(result)
        acc.log({f"{split}/{k}": v for split, m in metrics.items() if split != "train" for k, v in m.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=result.best_step)
        # Trackers flush and close before the run folder (which takes their files) is written. Not end_training():
        # that also tears down the process group, which saving still needs.
        for tracker in acc.trackers:
            tracker.finish()
        acc.trackers = []
        if cfg.compare_source_only and "test" in metrics:
            metrics["test_source_only"] = self._source_only()
        self.model = acc.unwrap_model(model).eval()
        self.run = LoadedRun(self.model, processor, cfg, splits.labels, {}, modality)
        # Every process takes part: under FSDP / ZeRO-3 this gathers the sharded weights (onto the main process).
        state = acc.get_state_dict(model)
        if acc.is_main_process:
            info = {"adapters_kit_version": __version__, "backbone_path": path, "modality": modality_name,
                    "labels": list(names), "input_column": splits.input_column,
                    "label_column": splits.label_column, "data_report": splits.report,
                    "trainable_parameters": trainable, "total_parameters": total, "history": result.history}
            trained, blocks = acc.unwrap_model(model).trained_blocks()
            if trained:
                info.update(trained_blocks=trained, blocks=blocks)
            try:
                # The report and the card go in before the folder takes its name (the card after the adapter's
                # save, which removes PEFT's own stub README).
                save_run(cfg.output, model=acc.unwrap_model(model), processor=processor, cfg=cfg,
                         labels=splits.labels, metrics=metrics, info=info, log=result.log, state=state,
                         finish=lambda tmp: (write_report(tmp), write_card(tmp, load_id=str(cfg.output))))
            except OSError as e:  # disk full, permissions changed mid-run: the atomic write left nothing behind
                raise UserError(f"could not write the run folder {cfg.output} ({e.strerror or e}); nothing was "
                                f"written (checkpoints, if any, are kept): free space or choose another folder "
                                f"and run again") from None
        acc.wait_for_everyone()
        return metrics

    def _objective(self, modality, processor) -> Objective | None:
        """DANN's target-domain batches or the joint method's source task, each from its own loader."""
        cfg, acc = self.cfg, self.accelerator
        if cfg.method not in OBJECTIVE_METHODS:
            return None
        with acc.main_process_first():
            if cfg.method == "dann":
                inputs = load_inputs(cfg.target_data, modality, cfg.text_column)
            else:
                source = load_splits(cfg.replace(data=cfg.source_data, text_column=None, label_column=None,
                                                 max_train_samples=None), modality)
                inputs = source.datasets["train"]
            prepared = prepare(inputs, modality, processor, train=True)
        # Its own shuffling seed, so the main loader's order is the same as without the objective.
        raw = make_loader(prepared, modality.collator(processor), cfg.batch_size, shuffle=True, seed=cfg.seed + 1)
        stream = BatchStream(acc.prepare(raw), raw.generator, cfg.seed + 1)
        acc.print(f"{cfg.method}: {len(prepared)} {'target-domain' if cfg.method == 'dann' else 'source-task'} "
                  f"examples")
        if cfg.method == "dann":
            return DomainAdversarial(stream)
        return Joint(stream, len(source.labels), cfg.joint_lambda,
                     lambda dim, k: build_head(cfg.head, dim, k, cfg.head_dropout))

    def _source_only(self) -> dict[str, Any]:
        """DANN's baseline: the same adapter, seed and budget without the domain loss; its test metrics."""
        out = Path(self.cfg.output).resolve()
        twin = self.cfg.replace(method=self.cfg.adapter, target_data=None, compare_source_only=False,
                                output=str(out.parent / f".{out.name}.source-only"), overwrite=True, resume=False,
                                resume_from=None, save_steps=None)
        self.accelerator.print("training the source-only baseline (same adapter and budget, no domain loss)")
        try:
            return AdapterTrainer(twin, accelerator=self.accelerator).train()["test"]
        finally:
            if self.accelerator.is_main_process:
                shutil.rmtree(twin.output, ignore_errors=True)

    def _solve_probe(self, model, feature_loaders: dict, names) -> TrainResult:
        """``--probe-solver lbfgs``: the linear head as a logistic regression on the cached training features, in
        one full-batch L-BFGS solve (each process solves the same problem identically); then one evaluation."""
        cfg, acc = self.cfg, self.accelerator
        features, labels = feature_loaders["train"].dataset.tensors
        start = time.perf_counter()
        iterations = fit_logistic(model.head[-1], features, labels)
        seconds = time.perf_counter() - start
        acc.print(f"probe solved with L-BFGS: {iterations} iterations over {len(labels)} cached feature vectors in "
                  f"{seconds:.2f} s")
        result = TrainResult(best_epoch=1, best_step=iterations, train_seconds=seconds, train_samples=len(labels))
        for split in cfg.split_list():
            metrics = evaluate(model, feature_loaders[split], acc, names, top_k=cfg.top_k)
            result.history.append({"epoch": 1, "global_step": iterations, "split": split,
                                   **{k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}})
            if split == "validation":
                result.best_metrics, result.best_score = metrics, metrics.get(cfg.best_metric)
        return result

    def _train_figures(self, result) -> dict[str, Any]:
        """``metrics.json``'s ``train`` entry: training-only timing (no evaluation), selection, processes."""
        figures = {"train_seconds": result.train_seconds, "train_samples": result.train_samples,
                   "samples_per_second": result.train_samples / max(result.train_seconds, 1e-9),
                   "tokens_per_second": (result.train_tokens / max(result.train_seconds, 1e-9)
                                         if result.train_tokens else None),
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "num_processes": self.accelerator.num_processes, "best_epoch": result.best_epoch,
                   "best_step": result.best_step, "stopped_early": result.stopped_early}
        if self.probe_stage:
            figures["probe_stage"] = self.probe_stage
        if self.pretrain_stage:
            figures["pretrain_stage"] = self.pretrain_stage
        return figures

    def classifier(self) -> Classifier:
        """The in-memory trained model as a :class:`Classifier` (what ``load(output)`` gives back)."""
        if self.run is None:
            raise RuntimeError("call train() first")
        return Classifier(self.run)

    def _loaders(self, model, splits, modality, processor, resuming: bool = False) -> tuple[dict, dict]:
        """(loaders of model inputs, loaders the loop trains and selects on): the same, or cached features."""
        cfg, acc = self.cfg, self.accelerator
        with acc.main_process_first():
            prepared = prepare(splits.datasets, modality, processor)
        collate = modality.collator(processor)
        adapter = build_adapter(cfg.adapter_method)
        # A probe's head trains on features in plain shuffled order (cached or not: the same result either way);
        # evaluation runs the whole model, so every method evaluates longest first.
        grouped = {s: cfg.group_by_length and (s != "train" or not adapter.frozen_backbone) for s in prepared}
        loaders = {s: make_loader(ds, collate, cfg.batch_size if s == "train" else cfg.eval_batch_size,
                                  shuffle=s == "train", seed=cfg.seed, group_by_length=grouped[s])
                   for s, ds in prepared.items()}
        if adapter.frozen_backbone and not cfg.cache_features:
            return loaders, loaders
        signature = modality.signature(processor)
        if adapter.frozen_backbone:
            return loaders, self._feature_loaders(model, prepared, collate, signature)
        if adapter.probe_first:
            self._probe_stage(model, self._feature_loaders(model, prepared, collate, signature), splits.labels.names)
        if cfg.method == "autoencoder-pretrain":
            if resuming:  # the checkpoint holds the adapter as the supervised stage left it
                self.pretrain_stage = {"skipped": "resumed from a checkpoint of the supervised stage"}
            else:
                self._pretrain_stage(model, prepared["train"], modality, processor)
        return loaders, loaders

    def _pretrain_stage(self, model, train_inputs, modality, processor) -> None:
        """Autoencoder pretraining of the adapter on unlabelled inputs (``pretrain_data`` or the training split's
        inputs), before the supervised stage."""
        cfg, acc = self.cfg, self.accelerator
        if cfg.pretrain_data:
            with acc.main_process_first():
                inputs = prepare(load_inputs(cfg.pretrain_data, modality, cfg.text_column), modality, processor,
                                 train=True)
        else:
            inputs = train_inputs
        loader = make_loader(inputs, modality.collator(processor), cfg.batch_size, shuffle=True, seed=cfg.seed + 2)
        acc.print(f"autoencoder pretraining: {cfg.pretrain_epochs} epoch(s) of masked reconstruction over "
                  f"{len(inputs)} unlabelled examples")
        set_seed(cfg.seed)
        self.pretrain_stage = pretrain(cfg, model, loader, acc, processor)
        losses = self.pretrain_stage["reconstruction_loss"]
        acc.print(f"reconstruction loss per epoch: {', '.join(f'{x:.4f}' for x in losses)} "
                  f"({self.pretrain_stage['seconds']:.1f} s)")

    def _feature_loaders(self, model, prepared, collate, signature: str = "") -> dict:
        """Encode the splits training reads once (eval mode, so exactly what inference computes), or find the
        features of an earlier run with the same weights, pooling, preprocessing (``signature``) and data in the
        cache."""
        cfg, acc = self.cfg, self.accelerator
        model.to(acc.device)
        key = backbone_fingerprint(model) + signature
        features = {}
        # Only what training reads: the final metrics of every split come from the whole model on raw inputs, so
        # encoding the test split here would be work thrown away.
        wanted = {"train", "validation", *cfg.split_list()}
        for s, ds in ((s, ds) for s, ds in prepared.items() if s in wanted):
            plain = make_loader(ds, collate, cfg.eval_batch_size, shuffle=False)
            features[s], hit = cached_encode(model, ds, plain, acc.device, key)
            acc.print(f"{s}: features {'from the cache' if hit else 'encoded once'} ({len(ds)} examples)")
        return {s: feature_loader(f, cfg.batch_size if s == "train" else cfg.eval_batch_size,
                                  shuffle=s == "train", seed=cfg.seed) for s, f in features.items()}

    def _probe_stage(self, model, feature_loaders: dict, names) -> None:
        """LP-FT's first stage: train the head alone on the untouched backbone's features (best epoch kept)."""
        cfg = self.cfg.replace(lr=build_adapter("probe").default_lr, epochs=self.cfg.probe_epochs, eval_steps=None,
                               eval_splits="validation", early_stopping_patience=None)
        self.accelerator.print(f"linear-probe stage: {cfg.epochs} epochs on cached features")
        set_seed(cfg.seed)
        result = train_loop(cfg, model, feature_loaders["train"], {"validation": feature_loaders["validation"]},
                            self.accelerator, names)
        self.probe_stage = {"validation_" + cfg.best_metric: result.best_score, "best_epoch": result.best_epoch}

    def _print_data(self, splits) -> None:
        r = splits.report
        sizes = ", ".join(f"{s} {n}" for s, n in r["sizes"].items())
        dups = sum(r["duplicates_dropped"].values())
        self.accelerator.print(f"data: {sizes}; {len(splits.labels)} classes; {dups} duplicate input(s) dropped "
                               f"({', '.join(f'{s} {n}' for s, n in r['duplicates_dropped'].items())}); "
                               f"columns input={splits.input_column!r} label={splits.label_column!r}")
        skipped = {k: sum(v.values()) for k, v in r.items() if k in ("null_rows", "unknown_labels")}
        if any(skipped.values()):
            log.warning("skipped rows: %s", skipped)


def evaluate_run(directory: str | Path, data: str, split: str = "test", batch_size: int = 64,
                 text_column: str | None = None, label_column: str | None = None, errors: int = 0,
                 accelerator: Accelerator | None = None) -> dict[str, Any]:
    """Evaluate a saved run on ``split`` of ``data``; record the result in the run's ``metrics.json`` and redraw
    its report. With ``errors`` > 0, also write the most confident mistakes to ``errors_<split>.csv``.

    Columns default to the ones the run was trained with.
    """
    run = load_run(directory)
    path = Path(directory) / "metrics.json"
    # Read (and so checked) before the evaluation runs: a corrupt file is found in seconds, not after it.
    everything = read_json(path, dict) if path.exists() else {}
    cfg = run.data_config(data, text_column, label_column)
    acc = accelerator or Accelerator()
    with acc.main_process_first():  # a lone file (eval --data new.csv) is the test split, nothing carved from it
        splits = load_splits(cfg, run.modality, labels=run.labels, lone="test")
    ds = splits.split(split, data)
    prepared = prepare(ds.add_column("index", list(range(len(ds)))), run.modality, run.processor)
    loader = make_loader(prepared, run.modality.collator(run.processor), batch_size, shuffle=False,
                         group_by_length=cfg.group_by_length)
    metrics = evaluate(acc.prepare(run.model), loader, acc, run.labels.names, top_k=cfg.top_k,
                       errors=errors)
    mistakes = metrics.pop("mistakes", None)
    if acc.is_main_process:
        everything[split] = metrics
        write_json(path, everything)
        write_report(directory)
        if mistakes is not None:
            out = write_mistakes(Path(directory) / f"errors_{split}.csv", mistakes, ds["input"], run.labels.names)
            metrics["errors_file"] = str(out)
    return metrics

