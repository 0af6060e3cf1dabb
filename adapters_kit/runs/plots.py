"""PNG reports drawn from a run's saved numbers: confusion matrix, training curves, reliability diagram, per-label
bars (multi-label), predicted against true values and residuals (regression).

Each function takes plain data (lists, dicts as stored in ``metrics.json`` / ``train_log.jsonl``) and a path, so
``adapters-kit report DIR`` can redraw everything from the run folder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from adapters_kit.runs.atomic import atomic_file


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when the first figure is drawn: a training
    process does not carry it (about 30 MB resident, half a second) through its training steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def confusion_matrix_png(cm: Sequence[Sequence[int]], names: Sequence[str], path: str | Path,
                         normalize: bool = False, title: str = "") -> Path:
    """Rows are true classes, columns predicted; ``normalize`` divides each row by its support."""
    m = np.asarray(cm, dtype=float)
    if normalize:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
    k = len(names)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = _pyplot().subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else max(m.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix"))
    if k <= 25:
        for i in range(k):
            for j in range(k):
                text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > 0.6 * (m.max() or 1) else "black")
    return _save(fig, path)


def curves_png(log: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]], metric: str,
               path: str | Path) -> Path:
    """Training loss per logged step (left) and the validation ``metric`` per evaluation (right)."""
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(11, 4))
    if log:
        left.plot([r["global_step"] for r in log], [r["loss"] for r in log], label="training loss", lw=1)
    left.set_xlabel("optimizer step")
    left.set_ylabel("loss")
    left.set_title("training loss")
    left.grid(alpha=0.3)
    if history:
        steps = [h["global_step"] for h in history]
        right.plot(steps, [h.get(metric) for h in history], marker="o", label=f"validation {metric}")
        if "log_loss" in history[0]:
            ax2 = right.twinx()
            ax2.plot(steps, [h.get("log_loss") for h in history], color="tab:red", ls="--", marker="x",
                     label="validation loss")
            ax2.set_ylabel("validation loss (log-loss)")
            ax2.legend(loc="upper right")
    right.set_xlabel("optimizer step")
    right.set_ylabel(metric)
    right.set_title(f"validation {metric}")
    right.grid(alpha=0.3)
    right.legend(loc="center right")
    return _save(fig, path)


def reliability_png(rel: dict[str, list], path: str | Path, title: str = "") -> Path:
    """Accuracy against confidence per bin, the diagonal being perfect calibration; bar width = bin."""
    edges = np.asarray(rel["edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    count = np.asarray(rel["count"])
    used = count > 0  # empty bins have no accuracy to draw
    acc = np.array([a if a is not None else 0.0 for a in rel["accuracy"]])
    conf = np.array([c if c is not None else 0.0 for c in rel["confidence"]])
    fig, (top, bottom) = _pyplot().subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres[used], acc[used], width=width[used], edgecolor="black", alpha=0.8, label="accuracy")
    top.bar(centres[used], np.abs(conf - acc)[used], bottom=np.minimum(acc, conf)[used], width=width[used],
            color="tab:red", alpha=0.35, hatch="//", edgecolor="tab:red", label="gap to mean confidence")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(title or "reliability diagram")
    top.legend(loc="upper left")
    bottom.bar(centres, count, width=width, color="gray", edgecolor="black")
    bottom.set_xlabel("confidence (max predicted probability)")
    bottom.set_ylabel("examples")
    bottom.set_xlim(0, 1)
    return _save(fig, path)


def per_label_png(per_label: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Horizontal bars of each label's (entity type's, tag's) F1 and average precision (or, where the scores have
    none, precision), labels by support (most frequent on top)."""
    rows = sorted(per_label.items(), key=lambda kv: (-(kv[1].get("support") or 0), kv[0]))
    second = "average_precision" if any("average_precision" in r for _, r in rows) else "precision"
    names = [f"{n} ({r.get('support', 0)})" for n, r in rows]
    f1 = [r.get("f1") or 0.0 for _, r in rows]
    other = [r.get(second) or 0.0 for _, r in rows]
    y = np.arange(len(rows))
    fig, ax = _pyplot().subplots(figsize=(7, max(3.0, 0.28 * len(rows) + 1)))
    ax.barh(y - 0.2, f1, height=0.4, label="F1")
    ax.barh(y + 0.2, other, height=0.4, label=second.replace("_", " "))
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (label support in brackets)")
    ax.legend(loc="lower right")
    ax.set_title(title or "per-label scores")
    return _save(fig, path)


def regression_png(plot: dict[str, Any], path: str | Path, target: str, title: str = "") -> Path:
    """Left: counts of (true, predicted) pairs on a grid, with the diagonal of perfect predictions; right: the
    histogram of residuals (true - predicted)."""
    lo, hi = plot["range"]
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    grid = np.asarray(plot["grid"], dtype=float).T  # rows: predicted, columns: true
    # empty cells stay white; viridis keeps a cell of one example as visible as a crowded one
    cells = left.imshow(np.ma.masked_equal(grid, 0), origin="lower", extent=(lo, hi, lo, hi), cmap="viridis",
                        aspect="auto", vmin=1)
    fig.colorbar(cells, ax=left, fraction=0.046, pad=0.04, label="examples")
    left.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    left.set_xlabel(f"true {target}")
    left.set_ylabel(f"predicted {target}")
    edges = np.asarray(plot["residual_edges"])
    right.bar(edges[:-1], plot["residual_counts"], width=np.diff(edges), align="edge")
    right.set_xlabel("residual (true - predicted)")
    right.set_ylabel("examples")
    fig.suptitle(title or target)
    return _save(fig, path)
