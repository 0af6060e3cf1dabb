"""adapters-kit sweep: trials are ordinary runs scored on validation; the best is kept, ranked results saved."""

import json

import pytest

from adapters_kit.cli import main
from adapters_kit.errors import UserError
from adapters_kit.sweep import parse_space, run_sweep


def test_space_parsing():
    space = parse_space("lr=1e-4..1e-2 log; weight_decay=0..0.1; lora_r=4,8,16; pooling=mean,cls")
    assert space == {"lr": ("range", 1e-4, 1e-2, True), "weight_decay": ("range", 0.0, 0.1, False),
                     "lora_r": ("choice", [4, 8, 16]), "pooling": ("choice", ["mean", "cls"])}
    for bad, message in [("lr", "bad --space part"), ("speed=1,2", "not a hyper-parameter"),
                         ("lr=0..1 log", "low > 0 for log"), ("lr=2..1", "need low < high")]:
        with pytest.raises(UserError, match=message):
            parse_space(bad)


def test_random_sweep_keeps_the_best_trial(tiny_cfg, tmp_path):
    out = tmp_path / "sweep"
    result = run_sweep(tiny_cfg(method="lora", epochs=1, output=str(out)), "lr=1e-3..3e-2 log; lora_r=2,4",
                       trials=3, sampler="random")
    scores = [t["f1_macro"] for t in result["trials"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert sorted(p.name for p in out.iterdir()) == ["best", "sweep.json"]
    kept = json.loads((out / "best" / "metrics.json").read_text())
    assert kept["validation"]["f1_macro"] == scores[0] == result["best"]["f1_macro"]
    trained = json.loads((out / "best" / "train_config.json").read_text())
    assert trained["lr"] == pytest.approx(result["best"]["params"]["lr"])
    assert trained["lora_r"] == result["best"]["params"]["lora_r"] and isinstance(trained["lora_r"], int)
    assert all(1e-3 <= t["params"]["lr"] <= 3e-2 for t in result["trials"])


def test_grid_sweep_runs_every_combination_from_the_cli(tiny_model_dir, text_files, tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["sweep", "--model", tiny_model_dir, "--data", f"train={text_files['train']}", "--method", "probe",
                 "--epochs", "2", "--space", "lr=0.01,0.1", "--sampler", "grid", "--trials", "10",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "sweep.json").read_text())
    assert sorted(t["params"]["lr"] for t in result["trials"]) == [0.01, 0.1]
    assert "validation f1_macro" in printed and "best: trial" in printed


def test_grid_with_a_range_is_refused(capsys, tiny_model_dir, text_files, tmp_path):
    code = main(["sweep", "--model", tiny_model_dir, "--data", f"train={text_files['train']}", "--space",
                 "lr=1e-3..1e-2", "--sampler", "grid", "--output", str(tmp_path / "g")])
    err = capsys.readouterr().err
    assert code == 2 and "--sampler grid needs choices, not ranges (lr)" in err and err.count("\n") == 1
