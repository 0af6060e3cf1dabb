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

from adapters_kit.runs.atomic import atomic_file
from adapters_kit.runs.checkpoint import read_json
from adapters_kit.runs.plots import confusion_matrix_png, curves_png, per_label_png, regression_png, reliability_png

TABLE_KEYS = ("n", "accuracy", "entity_f1", "entity_precision", "entity_recall", "entity_f1_macro", "token_accuracy",
              "f1_macro", "f1_micro", "f1_weighted", "f1_samples", "precision_macro",
              "recall_macro", "precision_micro", "recall_micro", "subset_accuracy", "hamming_loss", "map",
              "top_k_accuracy", "roc_auc", "log_loss", "ece", "mse", "rmse", "mae", "r2", "pearson", "spearman",
              "examples_per_second", "latency_ms_p50", "latency_ms_p95")
"""Scalar metrics the terminal tables show, where a split has them (each task computes its own)."""


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
    splits = [s for s, m in metrics.items() if isinstance(m, dict) and "n" in m and s != "train"]
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


def compare_table(run_dirs: Sequence[str | Path], split: str = "test",
                  speeds: Sequence[float] | None = None) -> Table:
    """Side-by-side summary of several runs on one split; ``speeds``: each run's inference examples/s measured
    side by side (:func:`adapters_kit.distill.speed.measure_runs`)."""
    table = Table(title=f"runs compared on {split}")
    table.add_column("")
    rows: dict[str, list[str]] = {k: [] for k in ("model", "method", "parameters", "trainable params",
                                                  "run folder MB", "train seconds", "train samples/s", *TABLE_KEYS)}
    for d in run_dirs:
        d = Path(d)
        cfg, info, metrics = (read_json(d / f) for f in ("train_config.json", "run_info.json", "metrics.json"))
        table.add_column(d.name, justify="right")
        m, train = metrics.get(split, {}), metrics.get("train", {})
        rows["model"].append(cfg["model"] if len(cfg["model"]) < 30 else "..." + cfg["model"][-27:])
        rows["method"].append(cfg["method"])
        kept = info.get("teacher", {}).get("blocks_kept")
        if kept:
            rows["model"][-1] += f" ({len(kept)} of {info['teacher']['teacher_blocks']} blocks)"
        rows["parameters"].append(f"{info.get('total_parameters', 0):,}")
        rows["trainable params"].append(f"{info.get('trainable_parameters', 0):,}")
        rows["run folder MB"].append(f"{folder_bytes(d) / 1e6:.1f}")
        rows["train seconds"].append(_fmt(train.get("train_seconds")))
        rows["train samples/s"].append(_fmt(train.get("samples_per_second")))
        for k in TABLE_KEYS:
            rows[k].append(_fmt(m.get(k)) if m else "-")
    if speeds is not None:
        rows["inference examples/s (measured now)"] = [f"{v:.1f}" for v in speeds]
    for name, values in rows.items():
        table.add_row(name, *values)
    return table


def folder_bytes(run_dir: Path) -> int:
    """Bytes of a run folder's files, without its checkpoints and tracker logs (what loading it reads)."""
    skip = [p for p in run_dir.iterdir() if p.name.startswith("checkpoint-") or p.name == "logs"]
    return sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file() and not any(s in f.parents for s in skip))


def write_report(run_dir: str | Path) -> list[Path]:
    """(Re)draw the PNGs of a run folder; returns the files written."""
    d = Path(run_dir)
    metrics, info = read_json(d / "metrics.json"), read_json(d / "run_info.json")
    cfg = read_json(d / "train_config.json")
    names = info["labels"]
    written = []
    split = "test" if "n" in metrics.get("test", {}) else "validation"
    if "confusion_matrix" in metrics.get(split, {}):
        cm = metrics[split]["confusion_matrix"]
        written.append(confusion_matrix_png(cm, names, d / "confusion_matrix.png", title=f"confusion matrix ({split})"))
        written.append(confusion_matrix_png(cm, names, d / "confusion_matrix_normalized.png", normalize=True,
                                            title=f"confusion matrix ({split}, row-normalised)"))
    if "reliability" in metrics.get(split, {}):
        written.append(reliability_png(metrics[split]["reliability"], d / "reliability.png",
                                       title=f"reliability diagram ({split}, ECE {metrics[split]['ece']:.4f})"))
    for key, what in (("per_label", "label"), ("per_type", "entity type"), ("per_tag", "tag")):
        if key in metrics.get(split, {}):
            written.append(per_label_png(metrics[split][key], d / f"{key}.png", title=f"per-{what} scores ({split})"))
    if "plot" in metrics.get(split, {}):
        written.append(regression_png(metrics[split]["plot"], d / "regression.png", names[0],
                                      title=f"{split}: r2 {metrics[split].get('r2') or 0:.3f}, "
                                            f"pearson {metrics[split].get('pearson') or 0:.3f}"))
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
