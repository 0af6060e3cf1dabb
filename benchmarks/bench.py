"""adapters_kit against a transformers ``Trainer`` + PEFT script, side by side: ``python benchmarks/bench.py``.

    python benchmarks/bench.py --quick
    python benchmarks/bench.py --scenarios train-lora,roofline --data bbc-news --max-length 128 --output bench.json

Every side runs in a child process of this one (``sides.py``) on the same backbone, split files (``splits.py``,
written once per data set before any side runs), hyper-parameters and seed; this script runs them one after another
(never two at once: they would share the cores), prints a table and the ratios computed from the measured
numbers, and writes everything to JSON. Scenarios:

- ``train-lora``: (A) ``trainer-tutorial``, (B) ``trainer-best``, (E) ``trainer-mean-pool`` (B with adapters_kit's
  mean pooling into a linear head), (C) ``adapters-kit`` at the same settings, (D) ``adapters-kit-defaults``;
  ratios C/A, C/B and C/E of samples/s, D against B for time to a model as good, E - B and C - E of accuracy.
- ``probe``: adapters_kit's probe on cached features, cold and warm, against a probe that re-encodes every batch
  of every epoch (10 epochs).
- ``inference``: a LoRA run (adapters_kit defaults) exported to merged, ONNX and int8: examples/s at batch 32 and
  test accuracy of each against the eager adapter model, p50/p95 latency at batch 1.
- ``scale``: cost growth. ``adapters-kit`` and ``trainer-best`` on 1k and 10k training examples, and
  ``adapters-kit`` at max length 128, 256 and 512, each for the same fixed number of optimizer steps
  (``scale_steps``) after loading and tokenising its whole training set: samples/s should stay flat as the
  data grows, time per sample grows with the length, and peak RSS is compared with the Trainer's.
- ``roofline``: the fp32 matmul peak of this machine, measured in the same run, and each training side's model
  FLOP/s as a share of it (MFU). FLOPs per token come from ``torch.utils.flop_counter`` on one unpadded
  forward + backward at the run's max length, times the real (unpadded) tokens trained on, so padding counts
  as waste, not as work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from splits import write_splits
from tables import show

import adapters_kit

HERE = Path(__file__).resolve().parent
SCENARIOS = ("train-lora", "probe", "inference", "scale", "roofline")
TRAIN_SIDES = ("trainer-tutorial", "trainer-best", "trainer-mean-pool", "adapters-kit", "adapters-kit-defaults")
"""A, B, E, C, D: the order of the first round (every other round runs them in reverse)."""
PROBE_SIDES = ("probe-reencode", "probe-cached", "probe-cached-warm")
"""In the order they run: the warm side finds the cache folder the cold side filled."""


@dataclass(frozen=True)
class BenchConfig:
    """Settings shared by every side (the baseline's recipe: LoRA r=8 on query/value, lr 5e-4, batch 16)."""

    model: str = "minilm-l6"
    data: tuple[str, ...] = ("bbc-news", "20newsgroups")
    max_length: tuple[int, ...] = (128, 256)
    epochs: int = 2
    batch_size: int = 16
    lr: float = 5e-4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    seed: int = 42
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    """Caps each held-out split for every side (20 Newsgroups' own test split holds 7,532 documents)."""
    probe_epochs: int = 10
    scenarios: tuple[str, ...] = SCENARIOS
    scale_data: str | None = None
    """The data set of the ``scale`` scenario (default: the last of ``data``, 20newsgroups: 10k+ examples)."""
    scale_sizes: tuple[int, ...] = (1000, 10000)
    scale_lengths: tuple[int, ...] = (128, 256, 512)
    scale_steps: int = 20
    repeats: int = 1
    """Rounds of the ``train-lora`` sides, in alternating order (A B E C D, D C E B A, ...: a machine that drifts
    during a round favours neither side of a pair over the rounds): each side shows its median run (by samples/s,
    :func:`median_sides`), and every ratio is also computed round by round (:func:`paired_spread`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls, **kw) -> "BenchConfig":
        """Minutes, not hours: one data set, 64 tokens, 200 training examples, one epoch."""
        base = dict(data=("bbc-news",), max_length=(64,), epochs=1, max_train_samples=200, scale_sizes=(50, 100),
                    scale_steps=3)
        base["scale_lengths"] = tuple(n * kw.get("max_length", (64,))[0] for n in (1, 2))
        return cls(**{**base, **kw})


def matmul_peak_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """Best fp32 GFLOP/s of an n x n matmul on this machine (all threads torch uses), after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One side in a fresh Python process; its own peak RSS and imports do not leak into the next side."""
    cmd = [sys.executable, str(HERE / "sides.py"), json.dumps(spec)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in r.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if r.returncode != 0 or line is None:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise adapters_kit.UserError(f"bench side {spec['side']} failed: {tail[0][:300]}")
    return json.loads(line[len("BENCH_RESULT "):])


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def train_lora_ratios(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The claims of the scenario, each computed from the measured figures of the sides."""
    a, b, e, c, d = (sides[s] for s in TRAIN_SIDES)
    return {"samples_per_second_C_over_A": _ratio(c["samples_per_second"], a["samples_per_second"]),
            "samples_per_second_C_over_B": _ratio(c["samples_per_second"], b["samples_per_second"]),
            "samples_per_second_C_over_E": _ratio(c["samples_per_second"], e["samples_per_second"]),
            "wall_seconds_D_over_B": _ratio(d["wall_seconds"], b["wall_seconds"]),
            "accuracy_D_minus_B": _minus(d["accuracy"], b["accuracy"]),
            "accuracy_E_minus_B": _minus(e["accuracy"], b["accuracy"]),
            "accuracy_C_minus_E": _minus(c["accuracy"], e["accuracy"]),
            "peak_rss_C_over_B": _ratio(c["peak_rss_mb"], b["peak_rss_mb"]),
            "peak_rss_D_over_B": _ratio(d["peak_rss_mb"], b["peak_rss_mb"])}


def median_sides(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each side's median run over the rounds by samples/s (of two middle runs, the slower): one measured run, so
    its figures stay consistent with one another (samples / train seconds = samples/s)."""
    out = {}
    for side in rounds[0]:
        runs = sorted((r[side] for r in rounds), key=lambda fig: fig["samples_per_second"])
        out[side] = runs[(len(runs) - 1) // 2]
    return out


def paired_spread(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Every ratio computed within each round, then its min, median and max over the rounds. Pairing within a
    round holds when the machine's speed drifts between rounds (both sides of a round see the same machine)."""
    per_round = [train_lora_ratios(r) for r in rounds]
    out = {}
    for key in per_round[0]:
        values = [r[key] for r in per_round if r[key] is not None]
        if values:
            out[key] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return out


def check_settings(cfg: BenchConfig) -> None:
    """Refuse, in one line, settings no side could run with, before any side starts."""
    unknown = [s for s in cfg.scenarios if s not in SCENARIOS]
    if unknown:
        raise adapters_kit.UserError(f"unknown bench scenario {', '.join(unknown)}; choose from "
                                     f"{', '.join(SCENARIOS)}")
    if cfg.repeats < 1:
        raise adapters_kit.UserError(f"--repeats must be >= 1 (rounds of the train-lora sides), got {cfg.repeats}")
    # the settings every side trains with, checked once here by TrainConfig's own rules, not by a failing side
    adapters_kit.TrainConfig(model=cfg.model, data=",".join(cfg.data), output="-", epochs=cfg.epochs,
                             batch_size=cfg.batch_size, lr=cfg.lr, lora_r=cfg.lora_r, lora_dropout=cfg.lora_dropout,
                             max_train_samples=cfg.max_train_samples, max_eval_samples=cfg.max_eval_samples)


def _splits(data: str, folder: str, seed: int, **kw) -> dict[str, Any]:
    """The split files every side of one comparison reads; a data spec that cannot be read is one line."""
    try:
        manifest = write_splits(data, folder, seed, **kw)
    except (OSError, KeyError, ValueError) as e:
        raise adapters_kit.UserError(f"cannot read data {data!r}: {type(e).__name__}: {e}") from None
    return {k: manifest[k] for k in ("files", "data", "labels", "sizes")}


def run_bench(cfg: BenchConfig, log=print) -> dict[str, Any]:
    """Run the chosen scenarios; returns the JSON-ready result (settings, per-side figures, ratios)."""
    check_settings(cfg)
    shared = dict(model=cfg.model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, lora_r=cfg.lora_r,
                  lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, seed=cfg.seed)
    out: dict[str, Any] = {"settings": {k: v for k, v in cfg.__dict__.items() if k != "extra"},
                           "torch_threads": torch.get_num_threads(), "runs": []}
    if "roofline" in cfg.scenarios:
        out["matmul_peak_gflops"] = matmul_peak_gflops()
        log(f"fp32 matmul peak: {out['matmul_peak_gflops']:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        for n, data in enumerate(cfg.data):
            if not {"train-lora", "probe", "inference"} & set(cfg.scenarios):
                break
            files = _splits(data, f"{tmp}/data-{n}", cfg.seed, max_train_samples=cfg.max_train_samples,
                            max_eval_samples=cfg.max_eval_samples)
            log(f"{data}: {', '.join(f'{s} {k}' for s, k in files['sizes'].items())} examples")
            for max_length in cfg.max_length if "train-lora" in cfg.scenarios else ():
                out["runs"].append(_train_lora_run(cfg, {**shared, **files}, data, max_length,
                                                   out.get("matmul_peak_gflops"), log))
            if "probe" in cfg.scenarios:
                out["runs"].append(_probe_run(cfg, {**shared, **files}, data, log))
            if "inference" in cfg.scenarios:
                out["runs"].append(_inference_run({**shared, **files}, data, cfg.max_length[0], log))
        if "scale" in cfg.scenarios:
            out["runs"].append(_scale_run(cfg, shared, tmp, log))
    return out


def _train_lora_run(cfg: BenchConfig, shared: dict[str, Any], data: str, max_length: int, peak: float | None,
                    log) -> dict[str, Any]:
    """The five training sides, ``cfg.repeats`` rounds of them (every other one in reverse order, its dict in the
    order the sides ran); MFU against ``peak`` GFLOP/s when measured."""
    rounds = []
    for n in range(1, cfg.repeats + 1):
        sides = {}
        for side in TRAIN_SIDES if n % 2 else TRAIN_SIDES[::-1]:
            log(f"train-lora {data} max_length {max_length}: {side}"
                f"{f' (round {n}/{cfg.repeats})' if cfg.repeats > 1 else ''} ...")
            sides[side] = run_child({**shared, "side": side, "max_length": max_length})
            if peak:
                sides[side]["mfu"] = sides[side]["model_flops_per_second"] / (peak * 1e9)
        rounds.append(sides)
    sides = median_sides(rounds)
    run = {"scenario": "train-lora", "data": data, "max_length": max_length, "sides": sides,
           "ratios": train_lora_ratios(sides)}
    if cfg.repeats > 1:
        run.update(rounds=rounds, paired_ratios=paired_spread(rounds))
    return run


def _probe_run(cfg: BenchConfig, shared: dict[str, Any], data: str, log) -> dict[str, Any]:
    """Re-encoding every epoch, then the feature cache cold (an empty cache folder: its one encoding is paid
    for), then warm (the folder the cold side filled: what a second probe of the same data finds, e.g. in a
    sweep)."""
    sides = {}
    with tempfile.TemporaryDirectory() as cache:
        for side in PROBE_SIDES:
            log(f"probe {data}: {side} ...")
            sides[side] = run_child({**shared, "side": side, "epochs": cfg.probe_epochs,
                                     "max_length": cfg.max_length[0], "feature_cache": cache})
    r, c, w = (sides[s] for s in PROBE_SIDES)
    return {"scenario": "probe", "data": data, "max_length": cfg.max_length[0], "sides": sides,
            "ratios": {"speedup_cached": _ratio(r["train_seconds"], c["train_seconds"]),
                       "speedup_cached_warm": _ratio(r["train_seconds"], w["train_seconds"]),
                       "accuracy_cached_minus_reencode": c["accuracy"] - r["accuracy"]}}


def _scale_run(cfg: BenchConfig, shared: dict[str, Any], tmp: str, log) -> dict[str, Any]:
    """Fixed-step runs over growing data and growing sequence length (see the module docstring). A fixed-step
    run scores nothing worth waiting for: its files are the training split beside a 64-example validation split,
    and no test split."""
    data, (small, large), short = cfg.scale_data or cfg.data[-1], cfg.scale_sizes, cfg.scale_lengths[0]
    points = [(side, n, short) for n in (small, large) for side in ("adapters-kit", "trainer-best")]
    points += [("adapters-kit", small, length) for length in cfg.scale_lengths[1:]]
    files = {n: _splits(data, f"{tmp}/scale-{n}", cfg.seed, max_train_samples=n, max_eval_samples=64,
                        keep=("train", "validation")) for n in (small, large)}
    sides = {}
    for side, n, length in points:
        name = f"{side} n={n} L={length}"
        log(f"scale {data}: {name} ({cfg.scale_steps} steps) ...")
        sides[name] = run_child({**shared, **files[n], "side": side, "max_length": length,
                                 "max_steps": cfg.scale_steps})
    c, b = "adapters-kit n={} L={}", "trainer-best n={} L={}"
    per_sample = {length: 1 / sides[c.format(small, length)]["samples_per_second"] for length in cfg.scale_lengths}
    ratios = {"samples_per_second_large_over_small": _ratio(sides[c.format(large, short)]["samples_per_second"],
                                                           sides[c.format(small, short)]["samples_per_second"]),
              **{f"peak_rss_C_over_B_n={n}": _ratio(sides[c.format(n, short)]["peak_rss_mb"],
                                                     sides[b.format(n, short)]["peak_rss_mb"]) for n in (small, large)},
              **{f"seconds_per_sample_L={length}_over_L={short}": per_sample[length] / per_sample[short]
                 for length in cfg.scale_lengths[1:]}}
    return {"scenario": "scale", "data": data, "max_length": short, "steps": cfg.scale_steps, "sides": sides,
            "ratios": ratios}


def _inference_run(shared: dict[str, Any], data: str, max_length: int, log) -> dict[str, Any]:
    log(f"inference {data}: train, export and time ...")
    sides = run_child({**shared, "side": "inference", "max_length": max_length})["artefacts"]
    eager = sides["eager"]
    best = max((n for n in sides if n != "eager"), key=lambda n: sides[n]["examples_per_second"])
    return {"scenario": "inference", "data": data, "max_length": max_length, "sides": sides,
            "ratios": {"best_exported": best,
                       "examples_per_second_best_over_eager": _ratio(sides[best]["examples_per_second"],
                                                                    eager["examples_per_second"]),
                       "accuracy_best_minus_eager": sides[best]["accuracy"] - eager["accuracy"]}}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="minutes: bbc-news, 64 tokens, 200 examples, 1 epoch")
    p.add_argument("--scenarios", help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--model", help="backbone (default minilm-l6)")
    p.add_argument("--data", action="append", help="data spec, repeat for several (default bbc-news and "
                                                   "20newsgroups)")
    p.add_argument("--max-length", help="comma-separated token limits (default 128,256)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--max-eval-samples", type=int, help="at most N examples of each held-out split, every side")
    p.add_argument("--repeats", type=int, help="rounds of the train-lora sides: median figures and per-round "
                                               "(paired) ratios with their spread (default 1)")
    p.add_argument("--output", default="bench.json", help="JSON result file (default bench.json)")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    def listed(value, cast=str):
        try:
            return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
        except ValueError:
            raise adapters_kit.UserError(f"bad list {value!r}: give comma-separated values such as 128,256") from None

    # A flag not given (or an empty list) keeps the default; any number given, 0 too, reaches check_settings.
    given = dict(model=args.model or None, epochs=args.epochs, max_train_samples=args.max_train_samples,
                 max_eval_samples=args.max_eval_samples, repeats=args.repeats,
                 scenarios=args.scenarios and listed(args.scenarios) or None, data=args.data and tuple(args.data),
                 max_length=args.max_length and listed(args.max_length, int) or None)
    kw = {k: v for k, v in given.items() if v is not None}
    return BenchConfig.quick(**kw) if args.quick else BenchConfig(**kw)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = run_bench(config_from_args(args))
    except adapters_kit.UserError as e:
        print(f"bench.py: error: {e}", file=sys.stderr)
        return 2
    show(result)
    print(f"written to {write_result(result, args.output)}")
    return 0


def write_result(result: dict[str, Any], path: str | Path) -> Path:
    """The JSON result, whole or not at all (written beside, then renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(partial, path)
    return path


if __name__ == "__main__":
    sys.exit(main())
