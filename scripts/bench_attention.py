"""What dropout on attention probabilities costs on this CPU: the lever behind ``--attention-dropout 0``.

``torch.nn.functional.scaled_dot_product_attention`` runs its fused (flash) CPU kernel only without dropout; with
dropout it falls back to the plain path that materialises every (length x length) attention matrix and keeps it
for the backward pass. This script times forward + backward of six attention layers of MiniLM-L6's shape (batch
16, 12 heads of 32 dimensions; one layer per block) with dropout 0.1 (the backbone's own, the baseline) and 0,
each in a fresh process so its peak resident memory is its own, and prints the ratios::

    .venv/bin/python scripts/bench_attention.py [--lengths 128,256,512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def measure(length: int, dropout: float, repeats: int) -> dict[str, float]:
    """Best seconds of forward + backward over ``repeats``, and the peak memory growth of this process (MB)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    q, k, v = (torch.randn(16, 12, length, 32, requires_grad=True) for _ in range(3))
    mask = torch.zeros(16, 1, 1, length)
    base, best = _rss_mb(), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        outs = [F.scaled_dot_product_attention(q * 1.0, k * 1.0, v * 1.0, attn_mask=mask, dropout_p=dropout)
                for _ in range(6)]  # six layers' outputs alive at once, as before a backward pass
        sum(o.sum() for o in outs).backward()
        best = min(best, time.perf_counter() - start)
        del outs
        q.grad = k.grad = v.grad = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": best, "peak_growth_mb": peak - base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="128,256,512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        length, dropout = json.loads(args.child)
        print(json.dumps(measure(length, dropout, args.repeats)))
        return
    print("length | dropout 0.1: s, MB | dropout 0: s, MB | time 0.1/0 | memory 0.1/0")
    for length in map(int, args.lengths.split(",")):
        rows = {}
        for dropout in (0.1, 0.0):
            out = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--child",
                                  json.dumps([length, dropout])], capture_output=True, text=True, check=True).stdout
            rows[dropout] = json.loads(out.strip().splitlines()[-1])
        a, b = rows[0.1], rows[0.0]
        print(f"{length} | {a['seconds']:.4g}, {a['peak_growth_mb']:,.0f} | {b['seconds']:.4g}, "
              f"{b['peak_growth_mb']:,.0f} | {a['seconds'] / b['seconds']:.2f}x | "
              f"{a['peak_growth_mb'] / max(b['peak_growth_mb'], 1):.2f}x")


if __name__ == "__main__":
    main()
