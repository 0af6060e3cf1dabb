"""Serving many adapters from one backbone: throughput, latency and memory of ``adapters-kit serve`` under load.

    python benchmarks/serve.py [--requests 2000] [--clients 32] [--root /tmp/serve-bench]

Trains (once, into ``--root``) four LoRA adapters on the packaged MiniLM, one per packaged text data set, then starts
real servers (``adapters-kit serve`` in a subprocess each, on loopback ports) and sends each the same bounded load:
``--requests`` requests of one test-split text each, from ``--clients`` concurrent clients (httpx, asyncio), in the
same order. Rows:

- one adapter, dynamic batching (the defaults: batches of up to 32 inputs, 10 ms wait);
- one adapter, one request at a time (``--max-batch-size 1 --max-wait-ms 0``), the same load;
- four adapters on one backbone (one server; requests cycle over the adapters);
- four single-run servers (four processes; requests cycle over the servers).

Memory is each server's resident set (VmRSS, and its peak VmHWM) after its load run. The load generator runs on the
same machine as the servers (two cores here): its own CPU time is part of every figure, the same for every row.
Results go to ``benchmarks/results/serve.json`` and ``serve.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from splits import read_split, write_splits

import adapters_kit

DATA = {"sms": "sms-spam", "bbc": "bbc-news", "r8": "r8", "news20": "20newsgroups"}
RESULTS = Path(__file__).parent / "results"


def prepare(root: Path, train_samples: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The four runs (trained once) and each data set's test texts."""
    runs, texts = {}, {}
    for name, data in DATA.items():
        splits = write_splits(data, str(root / "splits" / name), 0)
        runs[name] = str(root / "runs" / name)
        if not (Path(runs[name]) / "run_info.json").is_file():
            adapters_kit.AdapterTrainer(adapters_kit.TrainConfig(
                data=splits["data"], method="lora", output=runs[name], max_train_samples=train_samples,
                max_eval_samples=200, epochs=1, overwrite=True)).train()
        texts[name] = [str(t) for t in read_split(splits["files"]["test"])["text"]]
    return runs, texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(run_dirs: list[str], *flags: str):
    """A server process on a free loopback port; yields (base URL, pid) once ``/health`` answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "adapters_kit", "serve", *run_dirs, "--port", str(port),
                             "--max-queue", "100000", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        while proc.poll() is None:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"server failed to start: {proc.stderr.read().decode()[-2000:]}")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(60)


def memory_mb(pid: int) -> dict[str, float]:
    """Resident set now and at its peak, from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


async def _load(targets: list[tuple[str, str, str]], clients: int) -> dict:
    """Send every (url, adapter, text) once, ``clients`` at a time; latency per request and failures."""
    latencies, failures = [], []
    queue = iter(range(len(targets)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        async def worker():
            for i in queue:
                url, adapter, text = targets[i]
                start = time.perf_counter()
                r = await client.post(f"{url}/v1/predict", json={"adapter": adapter, "inputs": [text]})
                latencies.append(time.perf_counter() - start)
                if r.status_code != 200:
                    failures.append(r.status_code)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(targets), "failed": len(failures), "wall_s": round(wall, 2),
            "requests_per_s": round(len(targets) / wall, 1),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 95, 99)}}


def load(targets: list[tuple[str, str, str]], clients: int) -> dict:
    asyncio.run(_load(targets[:clients], clients))  # warm-up: connections, first batches
    return asyncio.run(_load(targets, clients))


def requests_for(urls_adapters: list[tuple[str, str]], texts: dict[str, list[str]], n: int) -> list:
    """``n`` requests cycling over (url, adapter): each adapter's own test texts, in order."""
    out = []
    for i in range(n):
        url, adapter = urls_adapters[i % len(urls_adapters)]
        pool = texts[adapter]
        out.append((url, adapter, pool[(i // len(urls_adapters)) % len(pool)]))
    return out


def run(root: Path, n: int, clients: int, train_samples: int) -> dict:
    runs, texts = prepare(root, train_samples)
    rows = {}
    with server([runs["sms"]]) as (url, pid):
        rows["one adapter, dynamic batching"] = {**load(requests_for([(url, "sms")], texts, n), clients),
                                                 "memory_mb": memory_mb(pid)}
    with server([runs["sms"]], "--max-batch-size", "1", "--max-wait-ms", "0") as (url, pid):
        rows["one adapter, one request at a time"] = {**load(requests_for([(url, "sms")], texts, n), clients),
                                                      "memory_mb": memory_mb(pid)}
    with server(list(runs.values())) as (url, pid):
        rows["four adapters, one backbone"] = {**load(requests_for([(url, a) for a in runs], texts, n), clients),
                                               "memory_mb": memory_mb(pid)}
    with server([runs["sms"]]) as a, server([runs["bbc"]]) as b, server([runs["r8"]]) as c, \
            server([runs["news20"]]) as d:
        targets = requests_for([(s[0], name) for s, name in zip((a, b, c, d), runs)], texts, n)
        row = load(targets, clients)
        each = [memory_mb(s[1]) for s in (a, b, c, d)]
        row["memory_mb"] = {k: sum(m[k] for m in each) for k in ("VmRSS", "VmHWM")}
        rows["four single-run servers"] = row
    shared, separate = rows["four adapters, one backbone"], rows["four single-run servers"]
    ratios = {
        "batching_throughput_over_one_at_a_time": round(rows["one adapter, dynamic batching"]["requests_per_s"]
                                                        / rows["one adapter, one request at a time"]["requests_per_s"],
                                                        2),
        "shared_memory_over_separate_rss": round(shared["memory_mb"]["VmRSS"] / separate["memory_mb"]["VmRSS"], 3),
        "shared_memory_over_separate_peak": round(shared["memory_mb"]["VmHWM"] / separate["memory_mb"]["VmHWM"], 3),
        "shared_throughput_over_separate": round(shared["requests_per_s"] / separate["requests_per_s"], 2),
    }
    return {"date": time.strftime("%Y-%m-%d"), "requests": n, "clients": clients, "train_samples": train_samples,
            "cpu_count": os.cpu_count(), "rows": rows, "ratios": ratios}


def show(result: dict) -> str:
    lines = [f"{result['requests']} requests (one text each) from {result['clients']} concurrent clients, "
             f"{result['date']}, {result['cpu_count']} CPU cores",
             f"{'':38s} {'req/s':>7s} {'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s} {'failed':>6s} {'RSS MB':>7s}"]
    for name, r in result["rows"].items():
        lines.append(f"{name:38s} {r['requests_per_s']:7.1f} {r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
                     f"{r['p99_ms']:7.1f} {r['failed']:6d} {r['memory_mb']['VmRSS']:7.0f}")
    lines += [f"{k}: {v}" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--train-samples", type=int, default=400, help="training examples per adapter (speed is the "
                                                                      "point here, not accuracy)")
    p.add_argument("--root", default="/tmp/adapters-kit-serve-bench")
    p.add_argument("--out", default=str(RESULTS / "serve"))
    args = p.parse_args(argv)
    result = run(Path(args.root), args.requests, args.clients, args.train_samples)
    text = show(result)
    print(text)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
