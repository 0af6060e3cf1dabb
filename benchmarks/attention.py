"""What dropout on attention probabilities costs on this CPU: the lever behind ``--attention-dropout 0``.

``torch.nn.functional.scaled_dot_product_attention`` runs its fused (flash) CPU kernel only without dropout; with
dropout it falls back to the plain path that materialises every (length x length) attention matrix and keeps it
for the backward pass. This script times forward + backward of six attention layers of MiniLM-L6's shape (batch
16, 12 heads of 32 dimensions; one layer per block) with dropout 0.1 (the backbone's own, the baseline) and 0,
each in a fresh process so its peak resident memory is its own, and prints the ratios. The same layers with
dropout 0.1 through the attention a model trains with under ``adapters_kit.fast_dropout`` (what ``--fast-dropout``
trains with; taken from transformers' ``AttentionInterface`` registry) are timed beside them, as is one dropout
of a (16, 12, length, length) tensor by ``nn.Dropout`` and by the dropout ``fast_dropout`` swaps in::

    .venv/bin/python benchmarks/attention.py [--lengths 128,256,512] [--repeats 3]
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


def _adapters_kit_attention():
    """The attention function a transformers model trains with inside ``adapters_kit.fast_dropout``."""
    from torch import nn
    from transformers import AttentionInterface, BertConfig, BertModel

    import adapters_kit

    probe = BertModel(BertConfig(vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32))
    with adapters_kit.fast_dropout(probe):
        name = probe.config._attn_implementation
    if name == "sdpa":
        raise SystemExit("adapters_kit.fast_dropout is off with these transformers / torch versions")
    attend, layer = AttentionInterface()[name], nn.Module()
    layer.is_causal = False
    return lambda q, k, v, mask, p: attend(layer, q, k, v, mask, dropout=p, scaling=q.shape[-1] ** -0.5)[0]


def measure(length: int, dropout: float, repeats: int, kernel: str = "torch") -> dict[str, float]:
    """Best seconds of forward + backward over ``repeats``, and the peak memory growth of this process (MB)."""
    import torch
    import torch.nn.functional as F

    fast = _adapters_kit_attention() if kernel == "adapters_kit" else None

    def attend(q, k, v, mask):
        if fast is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return fast(q, k, v, mask, dropout)

    torch.manual_seed(0)
    q, k, v = (torch.randn(16, 12, length, 32, requires_grad=True) for _ in range(3))
    mask = torch.zeros(16, 1, 1, length)
    base, best = _rss_mb(), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        outs = [attend(q * 1.0, k * 1.0, v * 1.0, mask)
                for _ in range(6)]  # six layers' outputs alive at once, as before a backward pass
        sum(o.sum() for o in outs).backward()
        best = min(best, time.perf_counter() - start)
        del outs
        q.grad = k.grad = v.grad = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": best, "peak_growth_mb": peak - base}


def dropout_seconds(length: int, repeats: int) -> tuple[float, float]:
    """Best seconds of one training-mode dropout (p 0.1) of a (16, 12, length, length) tensor: ``nn.Dropout``
    (its mask from ``bernoulli_``), then the dropout ``adapters_kit.fast_dropout`` swaps in."""
    import torch
    from torch import nn

    import adapters_kit

    x = torch.randn(16, 12, length, length)

    def best(dropout) -> float:
        times = []
        for _ in range(repeats + 1):  # the first call warms up
            start = time.perf_counter()
            dropout(x)
            times.append(time.perf_counter() - start)
        return min(times[1:])

    plain, swapped = nn.Dropout(0.1).train(), nn.Sequential(nn.Dropout(0.1)).train()
    with adapters_kit.fast_dropout(swapped):
        return best(plain), best(swapped[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="128,256,512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        length, dropout, kernel = json.loads(args.child)
        print(json.dumps(measure(length, dropout, args.repeats, kernel)))
        return
    print("length | dropout 0.1: s, MB | dropout 0: s, MB | time 0.1/0 | memory 0.1/0 | adapters_kit 0.1: s, MB | "
          "time, memory vs torch 0.1 | one dropout: nn.Dropout, adapters_kit ms")
    for length in map(int, args.lengths.split(",")):
        rows = {}
        for setting in ((0.1, "torch"), (0.0, "torch"), (0.1, "adapters_kit")):
            out = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--child",
                                  json.dumps([length, *setting])], capture_output=True, text=True, check=True).stdout
            rows[setting] = json.loads(out.strip().splitlines()[-1])
        a, b, c = rows[0.1, "torch"], rows[0.0, "torch"], rows[0.1, "adapters_kit"]
        bern, keep = dropout_seconds(length, args.repeats)
        print(f"{length} | {a['seconds']:.4g}, {a['peak_growth_mb']:,.0f} | {b['seconds']:.4g}, "
              f"{b['peak_growth_mb']:,.0f} | {a['seconds'] / b['seconds']:.2f}x | "
              f"{a['peak_growth_mb'] / max(b['peak_growth_mb'], 1):.2f}x | {c['seconds']:.4g}, "
              f"{c['peak_growth_mb']:,.0f} | {c['seconds'] / a['seconds']:.2f}x, "
              f"{c['peak_growth_mb'] / max(a['peak_growth_mb'], 1):.2f}x | {bern * 1e3:.3g}, {keep * 1e3:.3g}")


if __name__ == "__main__":
    main()
