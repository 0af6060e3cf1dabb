"""The competitors of a benchmark, each run alone in a child process: ``python -m adapters_kit.bench_sides SPEC``.

SPEC is a JSON object (``side`` plus the shared settings); the child prints one JSON line of measurements.
Sides:

- ``trainer-tutorial``: transformers ``Trainer`` + PEFT LoRA as tutorials write it (``padding="max_length"``);
- ``trainer-best``: the same with dynamic padding (``DataCollatorWithPadding``) and length-grouped sampling;
- ``adapters-kit``: ``AdapterTrainer`` with exactly the shared settings (LoRA on the same modules, same lr...);
- ``adapters-kit-defaults``: ``AdapterTrainer`` with its own defaults (what a user gets without tuning);
- ``probe-cached`` / ``probe-cached-warm`` / ``probe-reencode``: a probe on cached features (cold, then warm: the
  cache the cold side filled) against re-encoding every epoch;
- ``inference``: one LoRA run exported to merged, ONNX and int8, each timed against the eager adapter model.

Every side loads the same clean splits through :func:`adapters_kit.data.load_splits`, so the data, its
de-duplication and its split are identical. Training time covers the training steps only; ``wall_seconds``
is the whole side (load, tokenise, train, evaluate).
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch.utils.flop_counter import FlopCounterMode

from adapters_kit.catalog import resolve_model
from adapters_kit.config import TrainConfig
from adapters_kit.data import load_splits
from adapters_kit.modalities import get_modality

TRAINER_TARGETS = ["query", "value"]
"""The LoRA targets tutorials (and the issue's baseline) use for BERT-family encoders."""


def _splits(spec: dict[str, Any]):
    cfg = TrainConfig(data=spec["data"], max_train_samples=spec.get("max_train_samples"),
                      max_eval_samples=spec.get("max_eval_samples"), seed=spec["seed"])
    return load_splits(cfg, get_modality("text", cfg))


def _real_tokens(tokenizer, texts: list[str], max_length: int) -> int:
    """Tokens a model must read (no padding), the unit of tokens/s for every side."""
    return int(sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]))


def _flops_per_token(model: torch.nn.Module, tokenizer, max_length: int) -> float:
    """Forward+backward FLOPs of one unpadded sequence of ``max_length`` tokens, counted by torch's
    ``FlopCounterMode`` (matmuls and attention), divided by its length."""
    batch = tokenizer(["word " * max_length], truncation=True, max_length=max_length, return_tensors="pt")
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(**batch)
        logits = out.logits if hasattr(out, "logits") else out
        logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["input_ids"].shape[1]


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far. Each side reads it when its own job is done, before the bench's
    bookkeeping (reloading splits to count tokens, counting FLOPs) adds allocations of its own."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _attention_dropout(model: str) -> float | None:
    """The backbone's own attention-probability dropout: what the Trainer sides train with, so ``adapters-kit``
    (C) trains with it too instead of adapters_kit's PEFT default of 0."""
    from transformers import AutoConfig

    from adapters_kit.modalities import ATTENTION_DROPOUT_FIELDS

    config = AutoConfig.from_pretrained(resolve_model(model)[0])
    return next((getattr(config, f) for f in ATTENTION_DROPOUT_FIELDS if hasattr(config, f)), None)


def _trainer_side(spec: dict[str, Any], best: bool) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    path = resolve_model(spec["model"])[0]
    splits = _splits(spec)
    tok = AutoTokenizer.from_pretrained(path)
    set_seed(spec["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(splits.labels))
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=spec["lora_r"], lora_alpha=spec["lora_alpha"],
                                             lora_dropout=spec["lora_dropout"], target_modules=TRAINER_TARGETS))
    padding = False if best else "max_length"

    def tokenize(batch):
        return tok(batch["input"], truncation=True, max_length=spec["max_length"], padding=padding)

    data = splits.datasets.map(tokenize, batched=True, remove_columns=["input"]).rename_column("label", "labels")
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=spec["batch_size"], per_device_eval_batch_size=64,
            learning_rate=spec["lr"], num_train_epochs=spec["epochs"], seed=spec["seed"], weight_decay=0.01,
            report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no", use_cpu=True,
            disable_tqdm=True, train_sampling_strategy="group_by_length" if best else "random",
            max_steps=spec.get("max_steps") or -1)
        collator = DataCollatorWithPadding(tok) if best else default_data_collator
        trainer = Trainer(model=model, args=args, train_dataset=data["train"], data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        scores: dict[str, Any] = {"accuracy": None, "f1_macro": None,  # fixed-step (scale) runs score nothing
                                  "test_examples": None}
        if not spec.get("max_steps"):
            # Predictions travel with their own labels: with length grouping the order may differ from the split's.
            pred = trainer.predict(data["test"])
            y_pred, y_true = np.argmax(pred.predictions, -1), pred.label_ids
            scores = {"accuracy": accuracy_score(y_true, y_pred),
                      "f1_macro": f1_score(y_true, y_pred, average="macro"), "test_examples": len(y_true)}
    peak = _peak_rss_mb()
    return {"train_seconds": train_seconds, **scores, "peak_rss_mb": peak,
            "flops_per_token": _flops_per_token(model, tok, spec["max_length"]), **_sizes(spec, splits, tok)}


def _sizes(spec, splits, tok) -> dict[str, Any]:
    """Examples and real tokens trained on; with ``max_steps``, steps x batch examples of the average length."""
    train = splits.datasets["train"]
    tokens = _real_tokens(tok, list(train["input"]), spec["max_length"])
    samples = len(train) * spec["epochs"]
    if spec.get("max_steps"):
        samples = min(samples, spec["max_steps"] * spec["batch_size"])
    return {"train_examples": len(train), "samples": samples, "tokens": tokens * samples / len(train)}


def _adapters_kit_side(spec: dict[str, Any], defaults: bool) -> dict[str, Any]:
    from adapters_kit.trainer import AdapterTrainer

    with tempfile.TemporaryDirectory() as tmp:
        shared = dict(model=spec["model"], data=spec["data"], output=f"{tmp}/run", seed=spec["seed"],
                      max_length=spec["max_length"], max_train_samples=spec.get("max_train_samples"),
                      max_eval_samples=spec.get("max_eval_samples"), method="lora",
                      fast_dropout=True)  # adapters_kit's CPU fast path, as the published figures were measured
        if not defaults:
            shared.update(lr=spec["lr"], epochs=spec["epochs"], batch_size=spec["batch_size"],
                          lora_r=spec["lora_r"], lora_alpha=spec["lora_alpha"], lora_dropout=spec["lora_dropout"],
                          targets=",".join(TRAINER_TARGETS), warmup_ratio=0.0, max_steps=spec.get("max_steps"),
                          adapter_layers=0,  # every block, as the Trainer sides
                          attention_dropout=_attention_dropout(spec["model"]))
        trainer = AdapterTrainer(TrainConfig(**shared))
        metrics = trainer.train()
        peak = _peak_rss_mb()
        cfg, model, tok = trainer.cfg, trainer.model, trainer.run.processor
        splits = _splits({**spec, "epochs": cfg.epochs})
        sizes = _sizes({**spec, "epochs": cfg.epochs}, splits, tok)
        flops = _flops_per_token(model, tok, spec["max_length"])
    test = metrics.get("test", {})  # none in fixed-step (scale) runs
    return {"train_seconds": metrics["train"]["train_seconds"], "accuracy": test.get("accuracy"),
            "f1_macro": test.get("f1_macro"), "test_examples": test.get("n"), "flops_per_token": flops,
            "epochs": cfg.epochs, "peak_rss_mb": peak,
            **sizes}


def fixed_step_data(spec: dict[str, Any], tmp: str) -> str:
    """A fixed-step (scale) run of adapters_kit trains on the same training split but scores nothing worth waiting
    for: the split as a CSV beside a 64-example validation CSV, and no test split (the Trainer side skips its test
    pass too). The bench writes them before the side starts, so the side's peak RSS holds only its own job."""
    import pandas as pd

    splits = _splits(spec)
    train, held = splits.datasets["train"], splits.datasets.get("validation") or splits.datasets["test"]
    names = splits.labels.names
    for name, ds in (("train", train), ("validation", held.select(range(min(64, len(held)))))):
        pd.DataFrame({"text": ds["input"], "label": [names[i] for i in ds["label"]]}).to_csv(f"{tmp}/{name}.csv",
                                                                                             index=False)
    return f"train={tmp}/train.csv,validation={tmp}/validation.csv"


def _probe_side(spec: dict[str, Any], cached: bool) -> dict[str, Any]:
    """A linear probe for ``spec['epochs']`` epochs: on features encoded once, or re-encoding every epoch. With
    ``spec['feature_cache']`` the features are kept in (or found in) that folder, so a second side can run warm;
    without it in a fresh one, cold."""
    import os

    from adapters_kit.trainer import AdapterTrainer

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(spec.get("feature_cache") or f"{tmp}/cache")
        os.environ["ADAPTERS_KIT_CACHE"] = str(cache)
        before = _entries(cache / "features")
        cfg = TrainConfig(model=spec["model"], data=spec["data"], output=f"{tmp}/run", method="probe",
                          epochs=spec["epochs"], seed=spec["seed"], max_length=spec["max_length"],
                          max_train_samples=spec.get("max_train_samples"),
                          max_eval_samples=spec.get("max_eval_samples"), cache_features=cached)
        start = time.perf_counter()
        metrics = AdapterTrainer(cfg).train()
        seconds = time.perf_counter() - start
        after = _entries(cache / "features")
    return {"train_seconds": seconds, "accuracy": metrics["test"]["accuracy"],
            "f1_macro": metrics["test"]["f1_macro"], "samples": metrics["train"]["train_samples"],
            "cache_entries_before": before, "cache_entries_after": after}


def _entries(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def _latency_ms(predict, batches: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
    """p50 and p95 milliseconds per call over ``batches`` (after one warm-up call)."""
    predict(batches[0])
    times = []
    for batch in batches:
        start = time.perf_counter()
        predict(batch)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def _inference_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Eager adapter model vs merged vs int8 vs ONNX Runtime, all exported from one LoRA run and checked by
    ``export_run``: examples/s at batch 32 and accuracy on the test split, p50/p95 latency at batch 1."""
    from adapters_kit.checkpoint import load_run
    from adapters_kit.export import export_run, load_int8, load_merged, onnx_predictor, split_batches
    from adapters_kit.trainer import AdapterTrainer

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = spec.get("run_dir")
        if not run_dir:
            run_dir = f"{tmp}/run"
            AdapterTrainer(TrainConfig(model=spec["model"], data=spec["data"], output=run_dir, method="lora",
                                       seed=spec["seed"], max_length=spec["max_length"], epochs=spec["epochs"],
                                       max_train_samples=spec.get("max_train_samples"),
                                       max_eval_samples=spec.get("max_eval_samples"))).train()
        for to in ("merged", "onnx", "int8"):
            export_run(run_dir, to, f"{tmp}/{to}")
        run = load_run(run_dir)
        merged, int8 = load_merged(f"{tmp}/merged"), load_int8(f"{tmp}/int8")
        artefacts = {"eager": lambda b: run.model(**b), "merged": lambda b: merged(**b).logits,
                     "int8": lambda b: int8(**b), "onnx": onnx_predictor(Path(f"{tmp}/onnx/model.onnx"))}
        cap = spec.get("max_eval_samples")  # the same capped test split as the training sides score
        batches = split_batches(run, spec["data"], "test", None, batch_size=32, max_eval_samples=cap)
        labels = torch.cat([b.pop("labels") for b in batches])
        singles = split_batches(run, spec["data"], "test", spec.get("latency_samples", 64), batch_size=1,
                                max_eval_samples=cap)
        for b in singles:
            b.pop("labels")
        out: dict[str, Any] = {}
        with torch.inference_mode():
            for name, predict in artefacts.items():
                predict(batches[0])  # warm-up
                start = time.perf_counter()
                pred = torch.cat([predict(b).argmax(-1) for b in batches])
                seconds = time.perf_counter() - start
                p50, p95 = _latency_ms(predict, singles)
                out[name] = {"examples_per_second": len(pred) / seconds, "accuracy": float((pred == labels).float()
                                                                                            .mean()),
                             "latency_ms_p50": p50, "latency_ms_p95": p95, "test_examples": len(pred)}
    return {"artefacts": out, "train_seconds": 0.0, "samples": 0}


SIDES = {
    "trainer-tutorial": lambda s: _trainer_side(s, best=False),
    "trainer-best": lambda s: _trainer_side(s, best=True),
    "adapters-kit": lambda s: _adapters_kit_side(s, defaults=False),
    "adapters-kit-defaults": lambda s: _adapters_kit_side(s, defaults=True),
    "probe-cached": lambda s: _probe_side(s, cached=True),
    "probe-cached-warm": lambda s: _probe_side(s, cached=True),
    "probe-reencode": lambda s: _probe_side(s, cached=False),
    "inference": _inference_side,
}


def run_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one side in this process and add throughput, wall time and peak RSS to its measurements."""
    torch.manual_seed(spec["seed"])
    start = time.perf_counter()
    result = SIDES[spec["side"]](spec)
    result["wall_seconds"] = time.perf_counter() - start
    secs = max(result["train_seconds"], 1e-9)
    if result["samples"]:
        result["samples_per_second"] = result["samples"] / secs
    if "tokens" in result:
        result["tokens_per_second"] = result["tokens"] / secs
        result["seconds_per_epoch"] = secs / result.get("epochs", spec["epochs"])
        result["model_flops_per_second"] = result["flops_per_token"] * result["tokens"] / secs
    result.setdefault("peak_rss_mb", _peak_rss_mb())
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # run_child sets the libraries' own verbosity and progress bars by env
    out = run_side(json.loads(sys.argv[1]))
    sys.stdout.write("BENCH_RESULT " + json.dumps(out) + "\n")
