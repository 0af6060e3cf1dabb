"""Run by tests/test_evaluation_hooks.py under `accelerate launch --num_processes 2 --cpu`.

Evaluates fixed synthetic logits (37 examples, batch 4: 37 is not a multiple of 2 x 4) through the real
``evaluate`` path and writes rank 0's metrics to the JSON path given.
"""

import json
import sys

import torch
from accelerate import Accelerator
from evaluation_fixture import fixed_loader, identity_model  # this file's folder is on sys.path

from adapters_kit.evaluation.evaluator import SPEED_KEYS, evaluate

if __name__ == "__main__":
    acc = Accelerator(cpu=True)
    model, loader = acc.prepare(identity_model(), fixed_loader())
    metrics = evaluate(model, loader, acc, ["a", "b", "c", "d"], top_k=2)
    if acc.is_main_process:
        metrics = {k: v for k, v in metrics.items() if k not in SPEED_KEYS}
        with open(sys.argv[1], "w") as f:
            json.dump({"metrics": metrics, "world": acc.num_processes, "torch": torch.__version__}, f)
