import json

import pytest

from adapters_kit import UserError
from adapters_kit.runs.checkpoint import atomic_dir, check_output, load_run, write_json


def test_interrupted_write_leaves_no_folder_and_no_temp(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "train_config.json").write_text("{}")
            raise RuntimeError("killed half-way")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_run(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "metrics.json").write_text('{"old": true}')
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "metrics.json").write_text('{"new": true}')
            raise RuntimeError("killed half-way")
    assert json.loads((target / "metrics.json").read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_finished_write_replaces_the_old_run(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_dir(target) as tmp:
        write_json(tmp / "metrics.json", {"new": True})
    assert [p.name for p in target.iterdir()] == ["metrics.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_check_output(tmp_path):
    check_output(tmp_path / "new", overwrite=False)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", overwrite=False)  # empty: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output(tmp_path / "file", overwrite=True)


def test_newer_format_and_corrupt_files_are_refused(tmp_path):
    (tmp_path / "run_info.json").write_text(json.dumps({"format_version": 999}))
    with pytest.raises(UserError, match="newer adapters_kit"):
        load_run(tmp_path)
    (tmp_path / "run_info.json").write_text("{not json")
    with pytest.raises(UserError, match="run_info.json is corrupt"):
        load_run(tmp_path)


def test_a_run_with_empty_weights_is_never_written(tmp_path):
    """What FSDP / ZeRO-3 save when the state is not gathered: zero-size tensors. The run folder is refused."""
    import pytest
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from adapters_kit import TrainConfig
    from adapters_kit.data.splits import LabelMap
    from adapters_kit.model.modeling import build_model
    from adapters_kit.runs.checkpoint import save_run

    cfg = TrainConfig(method="probe", pooling="mean", output=str(tmp_path / "run"))
    model = build_model(cfg, BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=16, vocab_size=10)), num_labels=2)
    model.head[1].weight = torch.nn.Parameter(torch.empty(2, 0))  # a shard that holds nothing
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    with pytest.raises(RuntimeError, match="head.safetensors would hold empty weights"):
        save_run(cfg.output, model=model, processor=tok, cfg=cfg, labels=LabelMap(("a", "b")), metrics={},
                 info={}, log=[])
    assert not (tmp_path / "run").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]
