"""The task types on the packaged data sets: the probe and LoRA on minilm-l6 for each task, one run after another.

    .venv/bin/python benchmarks/tasks.py [--output benchmarks/results/tasks.json] [--only wnut16,boolq]

Each run is the `adapters-kit train` command recorded in its row (wall time is the whole command: load, tokenise,
train, evaluate, save); the table gives trainable parameters, wall time and the task's headline test metrics.
Run nothing else on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = ["--max-train-samples", "1000", "--max-eval-samples", "300"]
RUNS = [
    # (data set, the task's headline metrics, flags shared by both methods, probe flags, LoRA flags)
    ("wnut16", ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"), SIZES,
     ["--epochs", "5"], ["--epochs", "3"]),
    ("disaster-response", ("f1_micro", "f1_macro", "map"), [*SIZES, "--thresholds", "tuned"], [], ["--epochs", "3"]),
    ("vader-movies", ("rmse", "pearson", "spearman"), SIZES, [], ["--epochs", "3"]),
    ("boolq", ("accuracy", "f1_macro"),
     [*SIZES, "--text-column", "question", "--text-pair-column", "passage", "--max-length", "192"], [],
     ["--epochs", "3"]),
]
"""Every run trains on 1,000 examples of the training split and scores at most 300 of each held-out split, so that
the probe rows double as the integration tests (tests/test_integration_tasks.py) and every run takes minutes."""
CLI = [str(Path(sys.executable).parent / "adapters-kit"), "train", "--model", "minilm-l6"]


def run_one(data: str, method: str, flags: list[str], out: Path) -> dict:
    argv = [*CLI, "--data", data, "--method", method, *flags, "--output", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "run_info.json").read_text())
    return {"data": data, "method": method, "command": "adapters-kit train " + " ".join(argv[2:-2]),
            "task": json.loads((out / "train_config.json").read_text())["task"], "wall_seconds": round(wall, 1),
            "trainable_parameters": info["trainable_parameters"], "sizes": info["data_report"]["sizes"],
            "test": {k: v for k, v in metrics["test"].items() if isinstance(v, (int, float))}}


def table(rows: list[dict], metrics: dict[str, tuple[str, ...]]) -> str:
    lines = ["| data (task) | method | trainable params | wall time | test metrics |", "|---|---|---|---|---|"]
    for r in rows:
        shown = ", ".join(f"{k} {r['test'][k]:.4f}" for k in metrics[r["data"]] if r["test"].get(k) is not None)
        lines.append(f"| {r['data']} ({r['task']}) | {r['method']} | {r['trainable_parameters']:,} | "
                     f"{r['wall_seconds'] / 60:.1f} min | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/tasks.json")
    parser.add_argument("--only", help="comma-separated data sets of the list (default: all); their rows replace "
                                       "those of an earlier --output file")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {r[0] for r in RUNS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data, _, shared, probe, lora in (r for r in RUNS if r[0] in wanted):
            for method, own in (("probe", probe), ("lora", lora)):
                rows.append(run_one(data, method, [*shared, *own], Path(tmp) / f"{data}-{method}"))
                print(json.dumps(rows[-1]), flush=True)
    out = Path(args.output)
    if args.only and out.exists():  # the other data sets' rows of an earlier run stay, in the list's order
        kept = [r for r in json.loads(out.read_text())["rows"] if r["data"] not in wanted]
        rows = sorted(kept + rows, key=lambda r: ([d for d, *_ in RUNS].index(r["data"]), r["method"] != "probe"))
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1) + "\n")
    print(table(rows, {r[0]: r[1] for r in RUNS}))


if __name__ == "__main__":
    main()
