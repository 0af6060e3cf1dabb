"""`adapters-kit bench --quick` produces a complete, well-formed result; no timing is asserted."""

import json
import math

import pytest

from adapters_kit.bench import TRAIN_SIDES, train_lora_ratios
from adapters_kit.cli import main

FIGURES = {"samples_per_second", "tokens_per_second", "train_seconds", "wall_seconds", "peak_rss_mb", "accuracy",
           "f1_macro", "mfu", "model_flops_per_second", "seconds_per_epoch"}


def test_quick_bench_runs_every_side_and_derives_the_ratios(tiny_model_dir, text_files, tmp_path, capsys):
    out = tmp_path / "bench.json"
    data = f"train={text_files['train']},test={text_files['test']}"
    code = main(["bench", "--quick", "--model", tiny_model_dir, "--data", data, "--max-length", "16",
                 "--max-eval-samples", "12", "--output", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["matmul_peak_gflops"] > 0
    lora, probe, inference, scale = result["runs"]
    assert [r["scenario"] for r in result["runs"]] == ["train-lora", "probe", "inference", "scale"]
    assert set(lora["sides"]) == set(TRAIN_SIDES)
    for side, fig in lora["sides"].items():
        assert FIGURES <= set(fig), side
        assert all(fig[k] > 0 for k in FIGURES - {"accuracy", "f1_macro"}), side
        assert 0 <= fig["accuracy"] <= 1
        assert fig["samples_per_second"] == pytest.approx(fig["samples"] / fig["train_seconds"])
        assert fig["mfu"] == pytest.approx(fig["model_flops_per_second"] / (result["matmul_peak_gflops"] * 1e9))
        assert fig["train_seconds"] <= fig["wall_seconds"]
    # same data and settings on every side that shares them
    sizes = {fig["train_examples"] for fig in lora["sides"].values()}
    assert len(sizes) == 1
    assert {fig["test_examples"] for fig in lora["sides"].values()} == {12}  # --max-eval-samples, every side
    assert lora["ratios"] == pytest.approx(train_lora_ratios(lora["sides"]))
    assert lora["ratios"]["samples_per_second_C_over_A"] == pytest.approx(
        lora["sides"]["adapters-kit"]["samples_per_second"] / lora["sides"]["trainer-tutorial"]["samples_per_second"])
    r, c = probe["sides"]["probe-reencode"], probe["sides"]["probe-cached"]
    assert probe["ratios"]["speedup_cached"] == pytest.approx(r["train_seconds"] / c["train_seconds"])
    assert c["accuracy"] == pytest.approx(r["accuracy"])  # the same probe, computed twice over
    art = inference["sides"]
    assert set(art) == {"eager", "merged", "onnx", "int8"}
    for name, fig in art.items():
        assert fig["examples_per_second"] > 0 and 0 < fig["latency_ms_p50"] <= fig["latency_ms_p95"], name
    # merged and ONNX compute the same function as the adapter model (export checked them to 1e-4 / 1e-3)
    assert art["merged"]["accuracy"] == art["eager"]["accuracy"] == art["onnx"]["accuracy"]
    best = inference["ratios"]["best_exported"]
    assert best != "eager" and art[best]["examples_per_second"] == max(
        f["examples_per_second"] for n, f in art.items() if n != "eager")
    assert inference["ratios"]["examples_per_second_best_over_eager"] == pytest.approx(
        art[best]["examples_per_second"] / art["eager"]["examples_per_second"])
    # scale: fixed-step runs at two data sizes (both training sides) and two lengths (adapters_kit)
    assert set(scale["sides"]) == {"adapters-kit n=50 L=16", "trainer-best n=50 L=16", "adapters-kit n=100 L=16",
                                   "trainer-best n=100 L=16", "adapters-kit n=50 L=32"}
    for name, fig in scale["sides"].items():
        assert fig["samples"] == min(3 * 16, fig["train_examples"]), name  # 3 steps of batch 16 (or one epoch)
        assert fig["samples_per_second"] == pytest.approx(fig["samples"] / fig["train_seconds"]), name
    s = scale["sides"]
    assert s["adapters-kit n=50 L=16"]["train_examples"] < s["adapters-kit n=100 L=16"]["train_examples"]
    assert scale["ratios"]["samples_per_second_large_over_small"] == pytest.approx(
        s["adapters-kit n=100 L=16"]["samples_per_second"] / s["adapters-kit n=50 L=16"]["samples_per_second"])
    assert scale["ratios"]["peak_rss_C_over_B_n=100"] == pytest.approx(
        s["adapters-kit n=100 L=16"]["peak_rss_mb"] / s["trainer-best n=100 L=16"]["peak_rss_mb"])
    assert scale["ratios"]["seconds_per_sample_L=32_over_L=16"] == pytest.approx(
        s["adapters-kit n=50 L=16"]["samples_per_second"] / s["adapters-kit n=50 L=32"]["samples_per_second"])
    shown = capsys.readouterr().out
    assert "samples_per_second_C_over_B" in shown and "probe-cached" in shown


def test_unknown_scenario_is_one_line_error(capsys):
    assert main(["bench", "--scenarios", "nope"]) == 2
    assert "unknown bench scenario nope" in capsys.readouterr().err


def test_ratio_of_missing_figure_is_none():
    sides = {s: {"samples_per_second": 2.0, "wall_seconds": 4.0, "accuracy": 0.5, "peak_rss_mb": 10.0}
             for s in TRAIN_SIDES}
    sides["trainer-tutorial"]["samples_per_second"] = 0.0
    ratios = train_lora_ratios(sides)
    assert ratios["samples_per_second_C_over_A"] is None and ratios["samples_per_second_C_over_B"] == 1.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in ratios.values() if v is not None)


def test_attention_bench_prints_a_row_per_length_with_ratios_of_its_own_figures():
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_attention.py"
    out = subprocess.run([sys.executable, str(script), "--lengths", "8,16", "--repeats", "1"], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()
    assert out[0].startswith("length |") and len(out) == 3
    for line, length in zip(out[1:], (8, 16)):
        m = re.fullmatch(r"(\d+) \| ([\d.e-]+), (-?[\d,]+) \| ([\d.e-]+), (-?[\d,]+) \| ([\d.]+)x \| (-?[\d.]+)x", line)
        assert m and int(m[1]) == length, line
        assert float(m[6]) == pytest.approx(float(m[2]) / float(m[4]), rel=0.01, abs=0.006)  # 4 digits printed
