"""Run by tests/test_evaluation_hooks.py under `accelerate launch --num_processes 2 --cpu`.

Evaluates fixed synthetic outputs of every task (37 examples, batch 4: 37 is not a multiple of 2 x 4) through the
real ``evaluate`` path and writes rank 0's metrics per task to the JSON path given.
"""

import json
import sys

import torch
from accelerate import Accelerator
from evaluation_fixture import TASK_NAMES, fixed_loader, fixture_task, identity_model  # this folder is on sys.path

from adapters_kit.evaluation.evaluator import SPEED_KEYS, evaluate

if __name__ == "__main__":
    acc = Accelerator(cpu=True)
    model = acc.prepare(identity_model())
    metrics = {}
    for name in TASK_NAMES:
        found = evaluate(model, acc.prepare(fixed_loader(name)), acc, fixture_task(name))
        metrics[name] = {k: v for k, v in found.items() if k not in SPEED_KEYS}
    if acc.is_main_process:
        with open(sys.argv[1], "w") as f:
            json.dump({"metrics": metrics, "world": acc.num_processes, "torch": torch.__version__}, f)
