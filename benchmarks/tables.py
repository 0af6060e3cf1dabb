"""The benchmark's result as terminal tables: one per run (sides as rows, the figures it has as columns), its
ratios as the caption (with repeated rounds: the median figures, and the ratios' spread round by round)."""

from __future__ import annotations

import shutil
from typing import Any

from rich.console import Console
from rich.table import Table

COLUMNS = [("samples_per_second", "samples/s", "{:.1f}"), ("tokens_per_second", "tokens/s", "{:.0f}"),
           ("seconds_per_epoch", "s/epoch", "{:.1f}"), ("train_seconds", "train s", "{:.1f}"),
           ("wall_seconds", "wall s", "{:.1f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
           ("examples_per_second", "ex/s (b32)", "{:.1f}"), ("latency_ms_p50", "p50 ms (b1)", "{:.1f}"),
           ("latency_ms_p95", "p95 ms (b1)", "{:.1f}"), ("accuracy", "test acc", "{:.4f}"),
           ("f1_macro", "test F1", "{:.4f}"), ("mfu", "MFU", "{:.1%}")]


def tables(result: dict[str, Any]) -> list[Table]:
    out = []
    for run in result["runs"]:
        t = Table(title=f"{run['scenario']}: {run['data']}, max length {run['max_length']}")
        columns = [c for c in COLUMNS if any(fig.get(c[0]) is not None for fig in run["sides"].values())]
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


def show(result: dict[str, Any], width: int = 150) -> None:
    console = Console(width=max(width, shutil.get_terminal_size().columns))
    for table in tables(result):
        console.print(table)
