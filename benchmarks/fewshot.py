"""Few labelled examples: ``contrastive`` against the probe and LoRA, k examples per class, several draws.

    python benchmarks/fewshot.py [--data sms-spam --data bbc-news] [--k 8] [--seeds 0,1,2] [--out PATH]

For each data set and seed, k training examples of every class are drawn (with that seed) from the training split
that ``splits.py`` writes; every method trains on exactly those examples with adapters_kit's defaults on the packaged
all-MiniLM-L6-v2 and is scored on the whole test split. Printed: each method's test accuracy and macro-F1 as mean
+- standard deviation over the seeds, the per-seed values, and the mean wall time of a run (load, train, evaluate,
save). Results go to ``--out``.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from splits import read_split, write_splits

import adapters_kit

METHODS = ("probe", "lora", "contrastive")
RESULTS = Path(__file__).parent / "results"


def draw(train: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """k rows of every label (all of a label's rows when it has fewer), in a seeded order."""
    parts = [rows.sample(min(k, len(rows)), random_state=seed) for _, rows in train.groupby("label", sort=True)]
    return pd.concat(parts).sample(frac=1.0, random_state=seed)


def run(data: str, k: int, seeds: list[int], root: Path) -> dict:
    splits = write_splits(data, root / "splits", 0)
    train, test = read_split(splits["files"]["train"]), splits["files"]["test"]
    rows = {m: [] for m in METHODS}
    for seed in seeds:
        few = root / f"few-{seed}.parquet"
        draw(train, k, seed).to_parquet(few)
        for method in METHODS:
            start = time.perf_counter()
            metrics = adapters_kit.AdapterTrainer(adapters_kit.TrainConfig(
                data=f"train={few},test={test}", method=method, output=str(root / f"{method}-{seed}"),
                seed=seed, overwrite=True)).train()
            rows[method].append({"seed": seed, "accuracy": metrics["test"]["accuracy"],
                                 "f1_macro": metrics["test"]["f1_macro"],
                                 "wall_seconds": round(time.perf_counter() - start, 1)})
    summary = {}
    for method, per_seed in rows.items():
        acc, f1 = (np.array([r[key] for r in per_seed]) for key in ("accuracy", "f1_macro"))
        summary[method] = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)),
                           "f1_macro_mean": float(f1.mean()), "f1_macro_std": float(f1.std(ddof=1)),
                           "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in per_seed])),
                           "per_seed": per_seed}
    return {"data": data, "k": k, "train_examples": int(sum(min(k, n) for n in train["label"].value_counts())),
            "test_examples": splits["sizes"]["test"], "methods": summary}


def show(result: dict) -> str:
    lines = [f"{result['data']}: k={result['k']} per class, test {result['test_examples']}"]
    for method, s in result["methods"].items():
        seeds = " ".join(f"{r['accuracy']:.3f}" for r in s["per_seed"])
        lines.append(f"  {method:12s} accuracy {s['accuracy_mean']:.4f} +- {s['accuracy_std']:.4f}  macro-F1 "
                     f"{s['f1_macro_mean']:.4f} +- {s['f1_macro_std']:.4f}  wall {s['wall_seconds_mean']:.0f} s  "
                     f"(per seed: {seeds})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", help="built-in name or spec (repeat); default sms-spam, bbc-news")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default=str(RESULTS / "fewshot"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, data in enumerate(args.data or ["sms-spam", "bbc-news"]):
            results.append(run(data, args.k, seeds, Path(tmp) / str(i)))
            print(show(results[-1]), flush=True)
    stamp = {"date": time.strftime("%Y-%m-%d"), "results": results}
    Path(f"{args.out}.json").write_text(json.dumps(stamp, indent=2) + "\n")
    Path(f"{args.out}.txt").write_text("\n".join(show(r) for r in results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
