"""The competitors of a benchmark, each run alone in a child process: ``python benchmarks/sides.py SPEC``.

SPEC is a JSON object (``side`` plus the shared settings and the split files of ``splits.write_splits``); the child
prints one JSON line of measurements. Sides:

- ``trainer-tutorial`` (A): transformers ``Trainer`` + PEFT LoRA as tutorials write it (``padding="max_length"``);
- ``trainer-best`` (B): the same with dynamic padding (``DataCollatorWithPadding``) and length-grouped sampling;
- ``trainer-mean-pool`` (E): B with adapters_kit's pooling: the backbone's hidden states averaged over real tokens
  into dropout + one linear layer (``baselines.MeanPoolClassifier``), instead of the stock head, which reads the
  [CLS] token through the checkpoint's pooler (frozen under PEFT, and untrained in the packaged MiniLM);
- ``adapters-kit`` (C): ``AdapterTrainer`` with exactly the shared settings (LoRA on the same modules, same lr...);
- ``adapters-kit-defaults`` (D): ``AdapterTrainer`` with its own defaults (what a user gets without tuning);
- ``probe-reencode``: a linear probe that runs the frozen backbone on every batch of every epoch, written here
  (``baselines.probe_reencode``); ``probe-cached`` / ``probe-cached-warm``: adapters_kit's probe on its feature
  cache, cold (an empty cache folder) and then warm (the folder the cold side filled);
- ``inference``: one LoRA run exported to merged, ONNX and int8, each timed against the eager adapter model.

Training time covers the same span on every side: the training epochs' batches (loading included), forward,
backward and optimizer steps; not building the data loaders and optimizer, not evaluation, not saving.
adapters_kit reports it as ``metrics.json``'s ``train.train_seconds``; the Trainer sides measure it with
``baselines.EpochClock``. ``wall_seconds`` is the whole side (load, tokenise, train, evaluate).
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from baselines import TRAINER_TARGETS, EpochClock, MeanPoolClassifier, model_path, probe_reencode, scores
from splits import read_split
from torch.utils.flop_counter import FlopCounterMode

import adapters_kit

ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
"""What model families call the dropout on attention probabilities (BERT, Llama / Whisper, GPT-2)."""


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
    bookkeeping (counting tokens and FLOPs) adds allocations of its own."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _attention_dropout(model: str) -> float | None:
    """The backbone's own attention-probability dropout: what the Trainer sides train with, so ``adapters-kit``
    (C) trains with it too instead of adapters_kit's PEFT default of 0."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path(model))
    return next((getattr(config, f) for f in ATTENTION_DROPOUT_FIELDS if hasattr(config, f)), None)


def _sizes(spec: dict[str, Any], tok, epochs: int) -> dict[str, Any]:
    """Examples and real tokens trained on; with ``max_steps``, steps x batch examples of the average length."""
    texts = list(read_split(spec["files"]["train"])["text"])
    tokens = _real_tokens(tok, texts, spec["max_length"])
    samples = len(texts) * epochs
    if spec.get("max_steps"):
        samples = min(samples, spec["max_steps"] * spec["batch_size"])
    return {"train_examples": len(texts), "samples": samples, "tokens": tokens * samples / len(texts),
            "epochs": epochs}


def _trainer_data(spec: dict[str, Any], tok, padding):
    from datasets import Dataset, DatasetDict

    ids = {name: i for i, name in enumerate(spec["labels"])}

    def tokenize(batch):
        return {**tok(batch["text"], truncation=True, max_length=spec["max_length"], padding=padding),
                "labels": [ids[label] for label in batch["label"]]}

    data = DatasetDict({s: Dataset.from_pandas(read_split(p), preserve_index=False) for s, p in spec["files"].items()})
    return data.map(tokenize, batched=True, remove_columns=["text", "label"])


def _trainer_model(spec: dict[str, Any], mean_pool: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoModelForSequenceClassification

    path, k = model_path(spec["model"]), len(spec["labels"])
    lora = dict(r=spec["lora_r"], lora_alpha=spec["lora_alpha"], lora_dropout=spec["lora_dropout"],
                target_modules=TRAINER_TARGETS)
    if not mean_pool:
        return get_peft_model(AutoModelForSequenceClassification.from_pretrained(path, num_labels=k),
                              LoraConfig(task_type="SEQ_CLS", **lora))
    backbone = AutoModel.from_pretrained(path)
    dropout = getattr(backbone.config, "classifier_dropout", None) or getattr(backbone.config, "hidden_dropout_prob",
                                                                              0.1)
    return MeanPoolClassifier(get_peft_model(backbone, LoraConfig(**lora)), k, dropout)


def _trainer_side(spec: dict[str, Any], best: bool, mean_pool: bool = False) -> dict[str, Any]:
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    tok = AutoTokenizer.from_pretrained(model_path(spec["model"]))
    set_seed(spec["seed"])
    model = _trainer_model(spec, mean_pool)
    data = _trainer_data(spec, tok, padding=False if best else "max_length")
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=spec["batch_size"], per_device_eval_batch_size=64,
            learning_rate=spec["lr"], num_train_epochs=spec["epochs"], seed=spec["seed"], weight_decay=0.01,
            report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no", use_cpu=True,
            disable_tqdm=True, train_sampling_strategy="group_by_length" if best else "random",
            max_steps=spec.get("max_steps") or -1)
        collator = DataCollatorWithPadding(tok) if best else default_data_collator
        trainer = Trainer(model=model, args=args, train_dataset=data["train"], data_collator=collator,
                          callbacks=[clock])
        trainer.train()
        clock.check()
        figures: dict[str, Any] = {"accuracy": None, "f1_macro": None,  # fixed-step (scale) runs score nothing
                                   "test_examples": None}
        if not spec.get("max_steps"):
            # Predictions travel with their own labels: with length grouping the order may differ from the split's.
            pred = trainer.predict(data["test"])
            figures = scores(pred.label_ids, np.argmax(pred.predictions, -1))
    peak = _peak_rss_mb()
    return {"train_seconds": clock.seconds, **figures, "peak_rss_mb": peak,
            "flops_per_token": _flops_per_token(model, tok, spec["max_length"]),
            **_sizes(spec, tok, spec["epochs"])}


def _check_sizes(run_dir: str, spec: dict[str, Any]) -> None:
    """adapters_kit must have read the benchmark's files as written: nothing dropped, nothing carved."""
    sizes = json.loads(Path(run_dir, "run_info.json").read_text())["data_report"]["sizes"]
    if sizes != spec["sizes"]:
        raise RuntimeError(f"adapters_kit read splits of sizes {sizes}, the benchmark wrote {spec['sizes']}")


def _adapters_kit_side(spec: dict[str, Any], defaults: bool) -> dict[str, Any]:
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        shared = dict(model=spec["model"], data=spec["data"], output=f"{tmp}/run", seed=spec["seed"],
                      max_length=spec["max_length"], method="lora",
                      fast_dropout=True)  # adapters_kit's CPU fast path, as the published figures were measured
        if not defaults:
            shared.update(lr=spec["lr"], epochs=spec["epochs"], batch_size=spec["batch_size"],
                          lora_r=spec["lora_r"], lora_alpha=spec["lora_alpha"], lora_dropout=spec["lora_dropout"],
                          targets=",".join(TRAINER_TARGETS), warmup_ratio=0.0, max_steps=spec.get("max_steps"),
                          adapter_layers=0,  # every block, as the Trainer sides
                          attention_dropout=_attention_dropout(spec["model"]))
        trainer = adapters_kit.AdapterTrainer(adapters_kit.TrainConfig(**shared))
        metrics = trainer.train()
        peak = _peak_rss_mb()
        _check_sizes(f"{tmp}/run", spec)
    tok = AutoTokenizer.from_pretrained(model_path(spec["model"]))
    test = metrics.get("test", {})  # none in fixed-step (scale) runs
    return {"train_seconds": metrics["train"]["train_seconds"], "accuracy": test.get("accuracy"),
            "f1_macro": test.get("f1_macro"), "test_examples": test.get("n"), "peak_rss_mb": peak,
            "flops_per_token": _flops_per_token(trainer.model, tok, spec["max_length"]),
            **_sizes(spec, tok, trainer.cfg.epochs)}


def _probe_side(spec: dict[str, Any]) -> dict[str, Any]:
    """adapters_kit's probe for ``spec['epochs']`` epochs on its feature cache, kept in (or found in)
    ``spec['feature_cache']``: a second side on the same folder runs warm. Timed from load to metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(spec["feature_cache"])
        os.environ["ADAPTERS_KIT_CACHE"] = str(cache)
        before = _entries(cache / "features")
        cfg = adapters_kit.TrainConfig(model=spec["model"], data=spec["data"], output=f"{tmp}/run", method="probe",
                                       epochs=spec["epochs"], seed=spec["seed"], max_length=spec["max_length"])
        start = time.perf_counter()
        metrics = adapters_kit.AdapterTrainer(cfg).train()
        seconds = time.perf_counter() - start
        after = _entries(cache / "features")
        _check_sizes(f"{tmp}/run", spec)
    return {"train_seconds": seconds, "accuracy": metrics["test"]["accuracy"],
            "f1_macro": metrics["test"]["f1_macro"], "test_examples": metrics["test"]["n"],
            "samples": metrics["train"]["train_samples"], "cache_entries_before": before,
            "cache_entries_after": after}


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


def _artefacts(run_dir: str, tmp: str) -> dict[str, Any]:
    """The run and its three exports (``adapters-kit export``, which verifies each), as batch -> logits."""
    import onnxruntime
    from transformers import AutoModelForSequenceClassification

    for to in ("merged", "onnx", "int8"):
        subprocess.run([sys.executable, "-m", "adapters_kit", "export", run_dir, "--to", to, "--output",
                        f"{tmp}/{to}"], check=True, capture_output=True, text=True)
    eager = adapters_kit.load(run_dir).model
    merged = AutoModelForSequenceClassification.from_pretrained(f"{tmp}/merged", trust_remote_code=True).eval()
    int8 = adapters_kit.load_int8(f"{tmp}/int8")
    runtime = onnxruntime.InferenceSession(f"{tmp}/onnx/model.onnx", providers=["CPUExecutionProvider"])
    names = [i.name for i in runtime.get_inputs()]

    def onnx(batch):
        return torch.from_numpy(runtime.run(["logits"], {n: batch[n].numpy() for n in names})[0])

    return {"eager": lambda b: eager(**b), "merged": lambda b: merged(**b).logits, "int8": lambda b: int8(**b),
            "onnx": onnx}


def _inference_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Eager adapter model vs merged vs int8 vs ONNX Runtime, all exported from one LoRA run (adapters_kit's
    defaults): examples/s at batch 32 and accuracy on the test split, p50/p95 latency at batch 1."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = f"{tmp}/run"
        adapters_kit.AdapterTrainer(adapters_kit.TrainConfig(
            model=spec["model"], data=spec["data"], output=run_dir, method="lora", seed=spec["seed"],
            max_length=spec["max_length"], epochs=spec["epochs"])).train()
        artefacts = _artefacts(run_dir, tmp)
        names = adapters_kit.load(run_dir).labels
        tok = AutoTokenizer.from_pretrained(run_dir)
        test = read_split(spec["files"]["test"])
        texts, labels = list(test["text"]), torch.tensor([names.index(label) for label in test["label"]])

        def encode(chunk):
            return dict(tok(chunk, truncation=True, max_length=spec["max_length"], padding=True,
                            return_tensors="pt"))

        batches = [encode(texts[i:i + 32]) for i in range(0, len(texts), 32)]
        singles = [encode(texts[i:i + 1]) for i in range(min(spec.get("latency_samples", 64), len(texts)))]
        out: dict[str, Any] = {}
        with torch.inference_mode():
            for name, predict in artefacts.items():
                predict(batches[0])  # warm-up
                start = time.perf_counter()
                pred = torch.cat([predict(b).argmax(-1) for b in batches])
                seconds = time.perf_counter() - start
                p50, p95 = _latency_ms(predict, singles)
                out[name] = {"examples_per_second": len(pred) / seconds,
                             "accuracy": float((pred == labels).float().mean()), "latency_ms_p50": p50,
                             "latency_ms_p95": p95, "test_examples": len(pred)}
    return {"artefacts": out, "train_seconds": 0.0, "samples": 0}


SIDES = {
    "trainer-tutorial": lambda s: _trainer_side(s, best=False),
    "trainer-best": lambda s: _trainer_side(s, best=True),
    "trainer-mean-pool": lambda s: _trainer_side(s, best=True, mean_pool=True),
    "adapters-kit": lambda s: _adapters_kit_side(s, defaults=False),
    "adapters-kit-defaults": lambda s: _adapters_kit_side(s, defaults=True),
    "probe-reencode": lambda s: {**probe_reencode(s), "peak_rss_mb": _peak_rss_mb()},
    "probe-cached": _probe_side,
    "probe-cached-warm": _probe_side,
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
        result["seconds_per_epoch"] = secs / result["epochs"]
        result["model_flops_per_second"] = result["flops_per_token"] * result["tokens"] / secs
    result.setdefault("peak_rss_mb", _peak_rss_mb())
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()}


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # run_child sets the libraries' own verbosity and progress bars by env
    out = run_side(json.loads(sys.argv[1]))
    sys.stdout.write("BENCH_RESULT " + json.dumps(out) + "\n")
