"""`adapters-kit bench --quick` produces a complete, well-formed result; no timing is asserted."""

import json
import math

import pytest

from adapters_kit.bench import TRAIN_SIDES, median_sides, paired_spread, train_lora_ratios
from adapters_kit.cli import main

FIGURES = {"samples_per_second", "tokens_per_second", "train_seconds", "wall_seconds", "peak_rss_mb", "accuracy",
           "f1_macro", "mfu", "model_flops_per_second", "seconds_per_epoch"}


def test_quick_bench_runs_every_side_and_derives_the_ratios(tiny_model_dir, text_files, tmp_path, capsys):
    out = tmp_path / "bench.json"
    data = f"train={text_files['train']},test={text_files['test']}"
    code = main(["bench", "--quick", "--model", tiny_model_dir, "--data", data, "--max-length", "16",
                 "--max-eval-samples", "12", "--repeats", "2", "--output", str(out)])
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
    # two rounds: each side shows its slower run of the two (the lower median); paired ratios round by round
    first, second = lora["rounds"]
    assert list(first) == list(TRAIN_SIDES) and list(second) == list(TRAIN_SIDES)[::-1]  # alternating order
    for side in TRAIN_SIDES:
        assert lora["sides"][side] == min(first[side], second[side], key=lambda fig: fig["samples_per_second"])
    per_round = [r["adapters-kit"]["samples_per_second"] / r["trainer-best"]["samples_per_second"]
                 for r in (first, second)]
    assert lora["paired_ratios"]["samples_per_second_C_over_B"] == pytest.approx(
        {"min": min(per_round), "median": sum(per_round) / 2, "max": max(per_round)})
    assert lora["ratios"]["samples_per_second_C_over_A"] == pytest.approx(
        lora["sides"]["adapters-kit"]["samples_per_second"] / lora["sides"]["trainer-tutorial"]["samples_per_second"])
    r, c, w = (probe["sides"][s] for s in ("probe-reencode", "probe-cached", "probe-cached-warm"))
    assert probe["ratios"]["speedup_cached"] == pytest.approx(r["train_seconds"] / c["train_seconds"])
    assert probe["ratios"]["speedup_cached_warm"] == pytest.approx(r["train_seconds"] / w["train_seconds"])
    assert c["accuracy"] == pytest.approx(r["accuracy"])  # the same probe, computed twice over
    assert w["accuracy"] == c["accuracy"] and w["f1_macro"] == c["f1_macro"]  # ... and a third time, from the cache
    # cold: the cache starts empty and gets train's and validation's features; warm: finds both, writes nothing
    assert (r["cache_entries_before"], r["cache_entries_after"]) == (0, 0)
    assert (c["cache_entries_before"], c["cache_entries_after"]) == (0, 2)
    assert (w["cache_entries_before"], w["cache_entries_after"]) == (2, 2)
    art = inference["sides"]
    assert set(art) == {"eager", "merged", "onnx", "int8"}
    assert {fig["test_examples"] for fig in art.values()} == {12}  # the capped test split, as the training sides
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
    assert "samples_per_second_C_over_B" in shown and "probe-cached" in shown and "within each of 2 rounds" in shown


def test_median_sides_and_paired_spread_against_hand_computed_values():
    def side(sps, wall=10.0, rss=100.0, acc=0.5):
        return {"samples_per_second": sps, "wall_seconds": wall, "peak_rss_mb": rss, "accuracy": acc, "name": "x"}

    rounds = [{"trainer-tutorial": side(1.0), "trainer-best": side(2.0), "adapters-kit": side(3.0),
               "adapters-kit-defaults": side(4.0, wall=5.0, acc=0.75)},
              {"trainer-tutorial": side(1.0), "trainer-best": side(4.0), "adapters-kit": side(2.0),
               "adapters-kit-defaults": side(4.0, wall=4.0, acc=0.75)},
              {"trainer-tutorial": side(1.0), "trainer-best": side(3.0), "adapters-kit": side(6.0),
               "adapters-kit-defaults": side(4.0, wall=8.0, acc=0.75)}]
    med = median_sides(rounds)
    assert med["trainer-best"] is rounds[2]["trainer-best"] and med["adapters-kit"] is rounds[0]["adapters-kit"]
    assert med["adapters-kit-defaults"] is rounds[1]["adapters-kit-defaults"]  # ties keep round order: the middle
    assert median_sides(rounds[:2])["adapters-kit"] is rounds[1]["adapters-kit"]  # of two: the slower
    spread = paired_spread(rounds)
    # C/B per round: 1.5, 0.5, 2.0; D/B wall per round: 0.5, 0.4, 0.8
    assert spread["samples_per_second_C_over_B"] == pytest.approx({"min": 0.5, "median": 1.5, "max": 2.0})
    assert spread["wall_seconds_D_over_B"] == pytest.approx({"min": 0.4, "median": 0.5, "max": 0.8})
    assert spread["accuracy_D_minus_B"] == pytest.approx({"min": 0.25, "median": 0.25, "max": 0.25})


def test_zero_repeats_is_refused_in_one_line(capsys):
    assert main(["bench", "--quick", "--repeats", "0", "--output", "/tmp/never-written.json"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "adapters-kit: error: --repeats must be >= 1 (rounds of the train-lora sides), got 0"


def test_unknown_scenario_is_one_line_error(capsys):
    assert main(["bench", "--scenarios", "nope"]) == 2
    assert "unknown bench scenario nope" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["--max-eval-samples", "1"], "max_eval_samples must be >= 2, got 1"),
])
def test_bad_training_settings_are_refused_before_any_side_runs(tmp_path, capsys, flags, message):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", *flags, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapters-kit: error: invalid config: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


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
    num, mb = r"([\d.e-]+)", r"(-?[\d,]+)"
    for line, length in zip(out[1:], (8, 16)):
        m = re.fullmatch(rf"(\d+) \| {num}, {mb} \| {num}, {mb} \| ([\d.]+)x \| (-?[\d.]+)x \| {num}, {mb} \| "
                         rf"([\d.]+)x, (-?[\d.]+)x \| {num}, {num}", line)
        assert m and int(m[1]) == length, line
        assert float(m[6]) == pytest.approx(float(m[2]) / float(m[4]), rel=0.01, abs=0.006)  # 4 digits printed
        assert float(m[10]) == pytest.approx(float(m[8]) / float(m[2]), rel=0.01, abs=0.006)
        assert float(m[12]) > 0 and float(m[13]) > 0
