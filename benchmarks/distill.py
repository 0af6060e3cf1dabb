"""Distillation benchmark: a LoRA teacher, its layer-pruned student, and the student's ONNX and int8 exports, timed
side by side in one process.

For each data set: write the splits (``splits.py``: the same files for every model), train the teacher with
adapters_kit's defaults (``--method lora``), distil a student keeping ``--student-layers`` of its blocks
(``adapters-kit distill``'s defaults), export the student (``adapters-kit export``, which verifies each artefact),
then time every model batch by batch in turn on the test split (examples/s at batch 32, after one warm-up batch
each, so a machine whose load changes slows them all alike) and score each one's test accuracy.

    python benchmarks/distill.py --data bbc-news --output benchmarks/results/distill-bbc.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from splits import read_split, write_splits
from transformers import AutoTokenizer

import adapters_kit

BATCH = 32


def _artefacts(teacher: str, student: str, tmp: str) -> dict:
    """name -> (tokenizer folder, batch -> logits) for the teacher, the student and the student's exports."""
    import onnxruntime

    for to in ("onnx", "int8"):
        subprocess.run([sys.executable, "-m", "adapters_kit", "export", student, "--to", to, "--output",
                        f"{tmp}/{to}"], check=True, capture_output=True, text=True)
    runtime = onnxruntime.InferenceSession(f"{tmp}/onnx/model.onnx", providers=["CPUExecutionProvider"])
    names = [i.name for i in runtime.get_inputs()]
    eager_teacher, eager_student = adapters_kit.load(teacher).model, adapters_kit.load(student).model
    int8 = adapters_kit.load_int8(f"{tmp}/int8")

    def onnx(batch):
        return torch.from_numpy(runtime.run(["logits"], {n: batch[n].numpy() for n in names})[0])

    return {"teacher (eager)": (teacher, lambda b: eager_teacher(**b)),
            "student (eager)": (student, lambda b: eager_student(**b)),
            "student ONNX Runtime": (student, onnx), "student int8": (student, lambda b: int8(**b))}


def time_models(models: dict, texts: list[str], labels: torch.Tensor, max_length: int) -> dict:
    """Examples/s at batch ``BATCH`` (models in turn, batch by batch) and test accuracy of every model."""
    batches = {}
    for name, (folder, _) in models.items():
        tok = AutoTokenizer.from_pretrained(folder)
        batches[name] = [dict(tok(texts[i:i + BATCH], truncation=True, max_length=max_length, padding=True,
                                  return_tensors="pt")) for i in range(0, len(texts), BATCH)]
    seconds = dict.fromkeys(models, 0.0)
    predictions: dict[str, list] = {name: [] for name in models}
    with torch.inference_mode():
        for name, (_, predict) in models.items():
            predict(batches[name][0])  # warm-up
        for i in range(len(batches[next(iter(models))])):
            for name, (_, predict) in models.items():
                start = time.perf_counter()
                out = predict(batches[name][i])
                seconds[name] += time.perf_counter() - start
                predictions[name].append(out.argmax(-1))
    return {name: {"examples_per_second": len(texts) / seconds[name],
                   "accuracy": float((torch.cat(predictions[name]) == labels).float().mean())} for name in models}


def run(data: str, student_layers: int, seed: int, root: str) -> dict:
    splits = write_splits(data, f"{root}/splits", seed)
    teacher, student = f"{root}/teacher", f"{root}/student"
    start = time.perf_counter()
    teacher_metrics = adapters_kit.AdapterTrainer(adapters_kit.TrainConfig(
        data=splits["data"], method="lora", output=teacher, seed=seed)).train()
    teacher_seconds = time.perf_counter() - start
    start = time.perf_counter()
    student_metrics = adapters_kit.AdapterTrainer(adapters_kit.student_config(
        teacher, output=student, student_layers=student_layers)).train()
    student_seconds = time.perf_counter() - start
    info = json.loads(Path(student, "run_info.json").read_text())
    cfg = json.loads(Path(student, "train_config.json").read_text())
    test = read_split(splits["files"]["test"])
    names = adapters_kit.load(student).labels
    labels = torch.tensor([names.index(str(label)) for label in test["label"]])
    timed = time_models(_artefacts(teacher, student, root), list(test["text"]), labels,
                        cfg["max_length"] or 128)
    base = timed["teacher (eager)"]
    for row in timed.values():
        row["speedup_over_teacher"] = row["examples_per_second"] / base["examples_per_second"]
        row["accuracy_minus_teacher"] = row["accuracy"] - base["accuracy"]
    return {"data": data, "sizes": splits["sizes"], "student_layers": student_layers,
            "blocks_kept": info["teacher"].get("blocks_kept"), "student_method": cfg["method"],
            "student_epochs": cfg["epochs"], "student_lr": cfg["lr"],
            "teacher": {"parameters": info["teacher"]["parameters"], "wall_seconds": teacher_seconds,
                        "test": teacher_metrics["test"]["accuracy"]},
            "student": {"parameters": info["total_parameters"], "wall_seconds": student_seconds,
                        "test": student_metrics["test"]["accuracy"]},
            "timed": timed}


def show(result: dict) -> None:
    print(f"\n{result['data']}: teacher {result['teacher']['parameters']:,} parameters, student "
          f"{result['student']['parameters']:,} (blocks {result['blocks_kept']}); teacher trained in "
          f"{result['teacher']['wall_seconds']:.0f} s, student in {result['student']['wall_seconds']:.0f} s")
    print(f"{'model':<22} {'ex/s (b32)':>10} {'x teacher':>9} {'test acc':>9} {'- teacher':>9}")
    for name, row in result["timed"].items():
        print(f"{name:<22} {row['examples_per_second']:>10.1f} {row['speedup_over_teacher']:>9.2f} "
              f"{row['accuracy']:>9.4f} {row['accuracy_minus_teacher']:>+9.4f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="distill.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", action="append", help="data spec, repeat for several (default bbc-news)")
    p.add_argument("--student-layers", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", default="distill.json", help="JSON result file")
    args = p.parse_args(argv)
    results = []
    for data in args.data or ["bbc-news"]:
        with tempfile.TemporaryDirectory() as root:
            results.append(run(data, args.student_layers, args.seed, root))
        show(results[-1])
        Path(args.output).write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
