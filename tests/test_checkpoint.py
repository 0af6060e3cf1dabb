import json

import pytest

from adapters_kit import UserError
from adapters_kit.checkpoint import atomic_dir, check_output, load_run, write_json


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
