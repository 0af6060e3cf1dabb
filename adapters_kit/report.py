"""Reports a person looks at: PNGs in the run folder, terminal tables for one run or several, the mistakes CSV.

Everything is drawn from the files a run folder holds (``metrics.json``, ``train_log.jsonl``, ``run_info.json``),
so ``adapters-kit report DIR`` regenerates the same pictures at any time.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

from rich.table import Table

from adapters_kit.atomic import atomic_file
from adapters_kit.checkpoint import read_json
from adapters_kit.plots import confusion_matrix_png, curves_png, reliability_png

TABLE_KEYS = ("n", "accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
              "top_k_accuracy", "roc_auc", "log_loss", "ece", "examples_per_second", "latency_ms_p50",
              "latency_ms_p95")


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def metrics_table(metrics: dict[str, Any], title: str = "") -> Table:
    """One column per evaluated split, one row per scalar metric."""
    splits = [s for s, m in metrics.items() if isinstance(m, dict) and "accuracy" in m]
    table = Table(title=title or None)
    table.add_column("metric")
    for s in splits:
        table.add_column(s, justify="right")
    for key in TABLE_KEYS:
        if any(key in metrics[s] for s in splits):
            table.add_row(key, *[_fmt(metrics[s].get(key)) for s in splits])
    if any(metrics[s].get("top_k") for s in splits):
        table.add_row("top_k", *[_fmt(metrics[s].get("top_k")) for s in splits])
    return table


def compare_table(run_dirs: Sequence[str | Path], split: str = "test") -> Table:
    """Side-by-side summary of several runs on one split."""
    table = Table(title=f"runs compared on {split}")
    table.add_column("")
    rows: dict[str, list[str]] = {k: [] for k in ("model", "method", "trainable params", "train seconds",
                                                  "train samples/s", *TABLE_KEYS)}
    for d in run_dirs:
        d = Path(d)
        cfg, info, metrics = (read_json(d / f) for f in ("train_config.json", "run_info.json", "metrics.json"))
        table.add_column(d.name, justify="right")
        m, train = metrics.get(split, {}), metrics.get("train", {})
        rows["model"].append(cfg["model"] if len(cfg["model"]) < 30 else "..." + cfg["model"][-27:])
        rows["method"].append(cfg["method"])
        rows["trainable params"].append(f"{info.get('trainable_parameters', 0):,}")
        rows["train seconds"].append(_fmt(train.get("train_seconds")))
        rows["train samples/s"].append(_fmt(train.get("samples_per_second")))
        for k in TABLE_KEYS:
            rows[k].append(_fmt(m.get(k)) if m else "-")
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


def write_report(run_dir: str | Path) -> list[Path]:
    """(Re)draw the PNGs of a run folder; returns the files written."""
    d = Path(run_dir)
    metrics, info = read_json(d / "metrics.json"), read_json(d / "run_info.json")
    cfg = read_json(d / "train_config.json")
    names = info["labels"]
    written = []
    split = "test" if "confusion_matrix" in metrics.get("test", {}) else "validation"
    if "confusion_matrix" in metrics.get(split, {}):
        cm = metrics[split]["confusion_matrix"]
        written.append(confusion_matrix_png(cm, names, d / "confusion_matrix.png", title=f"confusion matrix ({split})"))
        written.append(confusion_matrix_png(cm, names, d / "confusion_matrix_normalized.png", normalize=True,
                                            title=f"confusion matrix ({split}, row-normalised)"))
    if "reliability" in metrics.get(split, {}):
        written.append(reliability_png(metrics[split]["reliability"], d / "reliability.png",
                                       title=f"reliability diagram ({split}, ECE {metrics[split]['ece']:.4f})"))
    log_path = d / "train_log.jsonl"
    log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    history = [h for h in info.get("history", []) if h.get("split", "validation") == "validation"]
    if log and "global_step" in log[0]:
        written.append(curves_png(log, history, cfg.get("best_metric", "f1_macro"), d / "curves.png"))
    return written


def write_mistakes(path: str | Path, rows: list[dict[str, Any]], inputs: Sequence[Any], names: Sequence[str]) -> Path:
    """CSV of the most confident mistakes: input preview, true label, predicted label, score."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "input", "true", "predicted", "score"])
        for r in rows:
            preview = " ".join(str(inputs[r["index"]]).split())[:200]
            w.writerow([r["index"], preview, names[r["true"]], names[r["predicted"]], f"{r['score']:.6f}"])
    return path


BENCH_COLUMNS = [("samples_per_second", "samples/s", "{:.1f}"), ("tokens_per_second", "tokens/s", "{:.0f}"),
                 ("seconds_per_epoch", "s/epoch", "{:.1f}"), ("train_seconds", "train s", "{:.1f}"),
                 ("wall_seconds", "wall s", "{:.1f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
                 ("examples_per_second", "ex/s (b32)", "{:.1f}"), ("latency_ms_p50", "p50 ms (b1)", "{:.1f}"),
                 ("latency_ms_p95", "p95 ms (b1)", "{:.1f}"), ("accuracy", "test acc", "{:.4f}"),
                 ("f1_macro", "test F1", "{:.4f}"), ("mfu", "MFU", "{:.1%}")]


def bench_tables(result: dict[str, Any]) -> list:
    """``adapters-kit bench``'s result as tables: one per run (sides as rows, the figures it has as columns), its
    ratios as the caption (with repeated rounds: the median figures, and the ratios' spread round by round)."""
    out = []
    for run in result["runs"]:
        t = Table(title=f"{run['scenario']}: {run['data']}, max length {run['max_length']}")
        columns = [c for c in BENCH_COLUMNS if any(fig.get(c[0]) is not None for fig in run["sides"].values())]
        t.add_column("side")
        for _, title, _ in columns:
            t.add_column(title, justify="right")
        for side, fig in run["sides"].items():
            t.add_row(side, *[fmt.format(fig[k]) if fig.get(k) is not None else "-" for k, _, fmt in columns])
        t.caption = "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in run["ratios"].items() if v is not None)
        if "paired_ratios" in run:
            t.caption += f"\nwithin each of {len(run['rounds'])} rounds, median (min-max): " + "  ".join(
                f"{k} {v['median']:.3g} ({v['min']:.3g}-{v['max']:.3g})" for k, v in run["paired_ratios"].items())
        out.append(t)
    return out
