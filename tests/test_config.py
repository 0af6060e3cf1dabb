import json
import re
from pathlib import Path

import pytest

from adapters_kit import TrainConfig, UserError, load_config
from adapters_kit.config import save_config

CONFIGS = sorted((Path(__file__).parents[1] / "scripts" / "configs").glob("*.yaml"))


def test_defaults_and_overrides_are_typed():
    cfg = load_config(None, ["epochs=3", "lr=2e-4", "method=probe", "text_column=body", "max_train_samples=100"])
    assert (cfg.epochs, cfg.lr, cfg.method, cfg.text_column, cfg.max_train_samples) == (3, 2e-4, "probe", "body",
                                                                                        100)
    assert cfg.batch_size == TrainConfig().batch_size


def test_numeric_looking_paths_stay_strings(tmp_path):
    assert load_config(None, ["output=2024", "model=123"]).output == "2024"


def test_yaml_file_then_flags(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# adapters-kit train --config c.yaml\nmethod: probe\nepochs: 5\n")
    cfg = load_config(p, ["epochs=7"])
    assert cfg.method == "probe" and cfg.epochs == 7


@pytest.mark.parametrize("override,message", [
    (["epochs=0"], "epochs must be a positive integer"),
    (["lr=-1"], "lr must be > 0"),
    (["mixed_precision=fp8"], "mixed_precision must be one of no, bf16, fp16"),
    (["best_metric=auc"], "best_metric must be one of"),
    (["nonsense=1"], "unknown config key.*nonsense"),
    (["epochs"], "must look like key=value"),
    (["attention_dropout=1.5"], r"attention_dropout must be in \[0, 1\), got 1.5"),
    (["max_eval_samples=1"], "max_eval_samples must be >= 2, got 1"),
])
def test_invalid_values_name_the_problem(override, message):
    with pytest.raises(UserError, match=message):
        load_config(None, override)


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("method: [probe\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(UserError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_config_is_frozen_and_round_trips(tmp_path):
    cfg = TrainConfig(method="probe", epochs=4)
    with pytest.raises(Exception):
        cfg.epochs = 5
    save_config(cfg, tmp_path / "c.json")
    assert TrainConfig(**json.loads((tmp_path / "c.json").read_text())) == cfg
    assert cfg.replace(epochs=9).epochs == 9 and cfg.epochs == 4


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, adapters_kit.config, adapters_kit.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    assert path.read_text().startswith("#"), "every YAML starts with a comment giving its launch command"
    load_config(path)


def test_there_are_shipped_configs():
    assert CONFIGS


def test_every_field_is_in_exactly_one_section():
    import dataclasses

    from adapters_kit.config import SECTIONS

    listed = [n for names in SECTIONS.values() for n in names]
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert not set(SECTIONS) & set(listed), "a group named like a setting would make YAML ambiguous"


def test_yaml_may_group_settings_by_section_or_keep_them_flat(tmp_path):
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text("backbone:\n  model: minilm-l6\n  pooling: mean\noptimisation:\n  lr: 0.001\n  epochs: 3\n"
                       "method: probe\n")
    flat = tmp_path / "flat.yaml"
    flat.write_text("model: minilm-l6\npooling: mean\nlr: 0.001\nepochs: 3\nmethod: probe\n")
    assert load_config(grouped) == load_config(flat)
    assert load_config(grouped, ["lr=0.01"]).lr == 0.01  # overrides stay flat


@pytest.mark.parametrize("text,message", [
    ("optimisation:\n  head: mlp\n", "section optimisation holds settings of other sections or unknown ones: "
                                     "head (in backbone)"),
    ("optimisation:\n  lrr: 0.1\n", "section optimisation holds settings of other sections or unknown ones: lrr;"),
    ("lr: 0.1\noptimisation:\n  lr: 0.2\n", "lr is set twice (flat and in its section)"),
])
def test_misplaced_grouped_settings_are_one_clear_line(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(path)
