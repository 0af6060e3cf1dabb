"""Peak extra memory of streaming evaluation on synthetic predictions (default: 1,000,000 x 1,000 classes).

    python benchmarks/eval_memory.py [--n 1000000] [--classes 1000] [--batch 10000]

Prints the peak memory traced while accumulating (numpy allocations included) against the size of all logits
held at once, which is what collecting every prediction before computing metrics would need.
"""

import argparse
import time
import tracemalloc

import numpy as np

from adapters_kit import StreamingMetrics


def run(n: int, classes: int, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    metrics = StreamingMetrics([str(i) for i in range(classes)])
    tracemalloc.start()
    start = time.perf_counter()
    for lo in range(0, n, batch):
        b = min(batch, n - lo)
        labels = rng.integers(0, classes, b)
        logits = rng.normal(size=(b, classes)).astype(np.float32)
        logits[np.arange(b), labels] += 3.0
        metrics.update(logits, labels)
        del logits
    out = metrics.compute()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"n": n, "classes": classes, "batch": batch, "peak_mb": peak / 2**20,
            "all_logits_mb": n * classes * 4 / 2**20, "seconds": time.perf_counter() - start,
            "accuracy": out["accuracy"], "roc_auc": out["roc_auc"], "roc_auc_approximate": out["roc_auc_approximate"]}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=1000)
    a = p.parse_args()
    r = run(a.n, a.classes, a.batch)
    print(f"{r['n']:,} predictions x {r['classes']:,} classes in batches of {r['batch']:,}: peak traced memory "
          f"{r['peak_mb']:.0f} MB (all logits at once would be {r['all_logits_mb']:,.0f} MB, ratio "
          f"{r['peak_mb'] / r['all_logits_mb']:.3f}); {r['seconds']:.1f} s; accuracy {r['accuracy']:.4f}, "
          f"ROC-AUC {r['roc_auc']:.4f} (approximate: {r['roc_auc_approximate']})")
