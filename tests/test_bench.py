"""`python benchmarks/bench.py --quick` produces a complete, well-formed result; no timing is asserted."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adapters_kit.cli import main as cli_main
from tests.cli_cases import assert_one_line_error

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from baselines import EpochClock  # noqa: E402
from bench import TRAIN_SIDES, main, median_sides, paired_spread, train_lora_ratios  # noqa: E402
from splits import make_splits  # noqa: E402

FIGURES = {"samples_per_second", "tokens_per_second", "train_seconds", "wall_seconds", "peak_rss_mb", "accuracy",
           "f1_macro", "mfu", "model_flops_per_second", "seconds_per_epoch"}


def test_quick_bench_runs_every_side_and_derives_the_ratios(tiny_model_dir, text_files, tmp_path, capsys):
    out = tmp_path / "bench.json"
    data = f"train={text_files['train']},test={text_files['test']}"
    code = main(["--quick", "--model", tiny_model_dir, "--data", data, "--max-length", "16",
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
    # the Trainer with adapters_kit's pooling (mean into a linear head) is a row of its own, with its accuracy
    b, e, c = (lora["sides"][s] for s in ("trainer-best", "trainer-mean-pool", "adapters-kit"))
    assert e["samples"] == b["samples"] and e["tokens"] == b["tokens"]  # B's data and recipe, another head
    assert lora["ratios"]["accuracy_E_minus_B"] == pytest.approx(e["accuracy"] - b["accuracy"])
    assert lora["ratios"]["accuracy_C_minus_E"] == pytest.approx(c["accuracy"] - e["accuracy"])
    assert lora["ratios"]["samples_per_second_C_over_E"] == pytest.approx(
        c["samples_per_second"] / e["samples_per_second"])
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
    _check_probe(probe)
    _check_inference(inference)
    _check_scale(scale)
    shown = capsys.readouterr().out
    assert "samples_per_second_C_over_B" in shown and "probe-cached" in shown and "within each of 2 rounds" in shown
    assert "trainer-mean-pool" in shown


def _check_probe(probe):
    r, c, w = (probe["sides"][s] for s in ("probe-reencode", "probe-cached", "probe-cached-warm"))
    assert probe["ratios"]["speedup_cached"] == pytest.approx(r["train_seconds"] / c["train_seconds"])
    assert probe["ratios"]["speedup_cached_warm"] == pytest.approx(r["train_seconds"] / w["train_seconds"])
    assert probe["ratios"]["accuracy_cached_minus_reencode"] == pytest.approx(c["accuracy"] - r["accuracy"])
    assert r["samples"] == c["samples"] == w["samples"]  # the same epochs over the same training split
    assert r["test_examples"] == c["test_examples"] == 12 and 0 <= r["accuracy"] <= 1
    assert w["accuracy"] == c["accuracy"] and w["f1_macro"] == c["f1_macro"]  # the same probe, from the cache
    # cold: the cache starts empty and gets train's and validation's features; warm: finds both, writes nothing
    assert (c["cache_entries_before"], c["cache_entries_after"]) == (0, 2)
    assert (w["cache_entries_before"], w["cache_entries_after"]) == (2, 2)


def _check_inference(inference):
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


def _check_scale(scale):
    # fixed-step runs at two data sizes (both training sides) and two lengths (adapters_kit)
    assert set(scale["sides"]) == {"adapters-kit n=50 L=16", "trainer-best n=50 L=16", "adapters-kit n=100 L=16",
                                   "trainer-best n=100 L=16", "adapters-kit n=50 L=32"}
    for name, fig in scale["sides"].items():
        assert fig["samples"] == min(3 * 16, fig["train_examples"]), name  # 3 steps of batch 16 (or one epoch)
        assert fig["samples_per_second"] == pytest.approx(fig["samples"] / fig["train_seconds"]), name
    s = scale["sides"]
    assert s["adapters-kit n=50 L=16"]["train_examples"] < s["adapters-kit n=100 L=16"]["train_examples"]
    assert s["adapters-kit n=100 L=16"]["train_examples"] == s["trainer-best n=100 L=16"]["train_examples"]
    assert scale["ratios"]["samples_per_second_large_over_small"] == pytest.approx(
        s["adapters-kit n=100 L=16"]["samples_per_second"] / s["adapters-kit n=50 L=16"]["samples_per_second"])
    assert scale["ratios"]["peak_rss_C_over_B_n=100"] == pytest.approx(
        s["adapters-kit n=100 L=16"]["peak_rss_mb"] / s["trainer-best n=100 L=16"]["peak_rss_mb"])
    assert scale["ratios"]["seconds_per_sample_L=32_over_L=16"] == pytest.approx(
        s["adapters-kit n=50 L=16"]["samples_per_second"] / s["adapters-kit n=50 L=32"]["samples_per_second"])


def _side(sps, wall=10.0, rss=100.0, acc=0.5):
    return {"samples_per_second": sps, "wall_seconds": wall, "peak_rss_mb": rss, "accuracy": acc, "name": "x"}


def test_median_sides_and_paired_spread_against_hand_computed_values():
    rounds = [{"trainer-tutorial": _side(1.0), "trainer-best": _side(2.0), "trainer-mean-pool": _side(2.0, acc=0.6),
               "adapters-kit": _side(3.0), "adapters-kit-defaults": _side(4.0, wall=5.0, acc=0.75)},
              {"trainer-tutorial": _side(1.0), "trainer-best": _side(4.0), "trainer-mean-pool": _side(2.0, acc=0.6),
               "adapters-kit": _side(2.0), "adapters-kit-defaults": _side(4.0, wall=4.0, acc=0.75)},
              {"trainer-tutorial": _side(1.0), "trainer-best": _side(3.0), "trainer-mean-pool": _side(2.0, acc=0.6),
               "adapters-kit": _side(6.0), "adapters-kit-defaults": _side(4.0, wall=8.0, acc=0.75)}]
    med = median_sides(rounds)
    assert med["trainer-best"] is rounds[2]["trainer-best"] and med["adapters-kit"] is rounds[0]["adapters-kit"]
    assert med["adapters-kit-defaults"] is rounds[1]["adapters-kit-defaults"]  # ties keep round order: the middle
    assert median_sides(rounds[:2])["adapters-kit"] is rounds[1]["adapters-kit"]  # of two: the slower
    spread = paired_spread(rounds)
    # C/B per round: 1.5, 0.5, 2.0; D/B wall per round: 0.5, 0.4, 0.8; C/E: 1.5, 1.0, 3.0
    assert spread["samples_per_second_C_over_B"] == pytest.approx({"min": 0.5, "median": 1.5, "max": 2.0})
    assert spread["samples_per_second_C_over_E"] == pytest.approx({"min": 1.0, "median": 1.5, "max": 3.0})
    assert spread["wall_seconds_D_over_B"] == pytest.approx({"min": 0.4, "median": 0.5, "max": 0.8})
    assert spread["accuracy_D_minus_B"] == pytest.approx({"min": 0.25, "median": 0.25, "max": 0.25})
    assert spread["accuracy_E_minus_B"] == pytest.approx({"min": 0.1, "median": 0.1, "max": 0.1})


def test_zero_repeats_is_refused_in_one_line(capsys):
    assert main(["--quick", "--repeats", "0", "--output", "/tmp/never-written.json"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "bench.py: error: --repeats must be >= 1 (rounds of the train-lora sides), got 0"


def test_unknown_scenario_is_one_line_error(capsys):
    assert main(["--scenarios", "nope"]) == 2
    assert "unknown bench scenario nope" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["--max-eval-samples", "1"], "max_eval_samples must be >= 2, got 1"),
])
def test_bad_training_settings_are_refused_before_any_side_runs(tmp_path, capsys, flags, message):
    out = tmp_path / "bench.json"
    assert main(["--quick", *flags, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench.py: error: invalid config: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_unreadable_data_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--data", f"train={tmp_path / 'missing.csv'}", "--scenarios", "probe",
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench.py: error: cannot read data ") and err.count("\n") == 1 and not out.exists()


def test_the_package_has_no_bench_command(capsys):
    assert_one_line_error(cli_main, ["bench", "--quick"], "invalid choice: 'bench'", capsys)


def test_ratio_of_missing_figure_is_none():
    sides = {s: {"samples_per_second": 2.0, "wall_seconds": 4.0, "accuracy": 0.5, "peak_rss_mb": 10.0}
             for s in TRAIN_SIDES}
    sides["trainer-tutorial"]["samples_per_second"] = 0.0
    sides["trainer-mean-pool"]["accuracy"] = None
    ratios = train_lora_ratios(sides)
    assert ratios["samples_per_second_C_over_A"] is None and ratios["samples_per_second_C_over_B"] == 1.0
    assert ratios["accuracy_E_minus_B"] is None and ratios["accuracy_D_minus_B"] == 0.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in ratios.values() if v is not None)


def test_epoch_clock_times_the_epochs_only_and_refuses_an_evaluation_inside_one():
    clock = EpochClock()
    clock.on_evaluate(None, None, None)  # before the first epoch (eval_on_start): outside the span
    for _ in range(2):
        clock.on_epoch_begin(None, None, None)
        clock.on_epoch_end(None, None, None)
        clock.on_save(None, None, None)  # an epoch-end save comes after on_epoch_end: outside the span
    clock.check()
    assert 0 < clock.seconds < 1
    clock.on_epoch_begin(None, None, None)
    clock.on_evaluate(None, None, None)
    with pytest.raises(RuntimeError, match="evaluation ran inside a timed epoch"):
        clock.check()


def test_the_split_files_hold_the_splits_adapters_kit_itself_draws(text_files):
    """The benchmark splits data by adapters_kit's own rules, so its files and ``adapters-kit train --data`` agree."""
    from adapters_kit import TrainConfig
    from adapters_kit.data.splits import load_splits
    from adapters_kit.modalities import get_modality

    spec = f"train={text_files['train']},test={text_files['test']}"
    ours = make_splits(spec, seed=7, max_train_samples=40, max_eval_samples=5)
    cfg = TrainConfig(data=spec, seed=7, max_train_samples=40, max_eval_samples=5)
    theirs = load_splits(cfg, get_modality("text", cfg))
    assert list(ours) == list(theirs.datasets) == ["train", "validation", "test"]
    for split, df in ours.items():
        ds = theirs.datasets[split]
        assert list(df["text"]) == list(ds["input"]), split
        assert list(df["label"]) == [theirs.labels.names[i] for i in ds["label"]], split


@pytest.mark.integration
def test_a_builtin_splits_as_adapters_kit_splits_it():
    """A built-in without a test split (BBC News): the same carved test and validation splits, example for example."""
    from adapters_kit import TrainConfig
    from adapters_kit.data.splits import load_splits
    from adapters_kit.modalities import get_modality

    ours = make_splits("bbc-news", seed=42, max_train_samples=500)
    cfg = TrainConfig(data="bbc-news", seed=42, max_train_samples=500)
    theirs = load_splits(cfg, get_modality("text", cfg))
    assert {s: len(df) for s, df in ours.items()} == theirs.report["sizes"] == {"train": 500, "validation": 213,
                                                                                "test": 213}
    for split, df in ours.items():
        assert list(df["text"]) == list(theirs.datasets[split]["input"]), split


def test_attention_bench_prints_a_row_per_length_with_ratios_of_its_own_figures():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "attention.py"), "--lengths", "8,16", "--repeats", "1"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert out[0].startswith("length |") and len(out) == 3
    num, mb = r"([\d.e-]+)", r"(-?[\d,]+)"
    for line, length in zip(out[1:], (8, 16)):
        m = re.fullmatch(rf"(\d+) \| {num}, {mb} \| {num}, {mb} \| ([\d.]+)x \| (-?[\d.]+)x \| {num}, {mb} \| "
                         rf"([\d.]+)x, (-?[\d.]+)x \| {num}, {num}", line)
        assert m and int(m[1]) == length, line
        assert float(m[6]) == pytest.approx(float(m[2]) / float(m[4]), rel=0.01, abs=0.006)  # 4 digits printed
        assert float(m[10]) == pytest.approx(float(m[8]) / float(m[2]), rel=0.01, abs=0.006)
        assert float(m[12]) > 0 and float(m[13]) > 0
