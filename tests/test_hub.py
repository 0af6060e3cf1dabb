"""push -> Hub -> load, through the real huggingface_hub code against a local stand-in of the Hub API."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapters_kit import UserError, load
from adapters_kit.cli import main
from adapters_kit.share.hub import files_to_push, push_run
from tests import hub_standin
from tests.test_roundtrip import train_tiny

TOKEN = "hf_standinSecretToken123"
TEXTS = ["team goal match win", "market shares profit bank economy today", "phone chip data users"]
ROOT = Path(__file__).parents[1]
EXPECTED = ["README.md", "adapter_config.json", "adapter_model.safetensors", "confusion_matrix.png",
            "confusion_matrix_normalized.png", "curves.png", "head.safetensors", "labels.json", "metrics.json",
            "reliability.png", "run_info.json", "tokenizer.json", "tokenizer_config.json", "train_config.json",
            "train_log.jsonl"]


@pytest.fixture
def run_copy(tiny_model_dir, tmp_path_factory, tmp_path):
    """The tiny LoRA run, copied, with the clutter a real folder collects beside it."""
    _, _, _, out = train_tiny("lora", tiny_model_dir, tmp_path_factory)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    (run / ".cache").mkdir()
    (run / ".cache" / "features.arrow").write_bytes(b"x")
    (run / ".metrics.json.tmp").write_text("{}")
    for name in ("optimizer.pt", "scheduler.bin", "rng_state.pth", "token", "errors_test.csv", "notes.txt"):
        (run / name).write_text("local only")
    return run


def test_files_to_push_is_an_allow_list(run_copy):
    assert files_to_push(run_copy) == sorted(set(EXPECTED) - {"README.md"} | {"README.md"})
    with pytest.raises(UserError, match="is not a run folder"):
        files_to_push(run_copy / "checkpoint-10")
    with pytest.raises(UserError, match="must look like user/name"):
        push_run(run_copy, "no-slash", dry_run=True)


def test_dry_run_lists_exactly_what_would_go_and_sends_nothing(run_copy, capsys, monkeypatch):
    server, store, endpoint = hub_standin.start()
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    try:
        before = (run_copy / "README.md").read_text()
        assert main(["push", str(run_copy), "--repo-id", "user/name", "--dry-run", "--token", TOKEN]) == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"dry run: would upload {len(EXPECTED)} file(s) to user/name:"
    assert [line.strip() for line in out[1:]] == EXPECTED
    assert store.requests == [] and (run_copy / "README.md").read_text() == before
    assert main(["push", str(run_copy), "--repo-id", "a/b/c", "--dry-run"]) == 2


PUSH_AND_LOAD = """
import contextlib, io, json, re, sys
from adapters_kit.cli import main
run, token, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rc = main(["push", run, "--repo-id", "user/name", "--private", "--token", token,
           "--commit-message", "first upload"])
rc2 = main(["push", run, "--repo-id", "user/name", "--revision", "dev", "--token", token])
from adapters_kit import load
clf = load("user/name", token=token)
from huggingface_hub import snapshot_download
folder = snapshot_download("user/name", token=token)
snippet = re.findall(r"```python\\n(.*?)```", open(folder + "/README.md").read(), flags=re.S)[0]
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    exec(snippet, {})
print("RESULT " + json.dumps({"rc": [rc, rc2], "logits": clf.logits(texts).tolist(), "preds": clf(texts),
                              "folder": folder, "snippet_out": buf.getvalue()}))
"""


def push_and_load(run: Path, texts: list[str], home: Path):
    """Push ``run`` as user/name to a fresh Hub stand-in and load it back, in a child process whose Hub cache is
    ``home``; returns (the child's process, its RESULT, the stand-in's store)."""
    server, store, endpoint = hub_standin.start()
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home), "PYTHONPATH": str(ROOT),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)
    try:
        proc = subprocess.run([sys.executable, "-c", PUSH_AND_LOAD, str(run), TOKEN, json.dumps(texts)],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    return proc, result, store


def test_push_then_load_from_the_hub_standin(run_copy, tmp_path):
    proc, result, store = push_and_load(run_copy, TEXTS, tmp_path / "hf_home")
    assert result["rc"] == [0, 0]
    repo = store.repos["user/name"]
    assert repo["private"] is True
    main_files = repo["commits"][repo["branches"]["main"]]
    assert sorted(main_files) == EXPECTED
    for name, data in main_files.items():
        assert data == (run_copy / name).read_bytes(), name
    assert sorted(repo["commits"][repo["branches"]["dev"]]) == EXPECTED
    # the card that went up names the repo, and its snippet ran against the stand-in
    assert "clf = load('user/name')" in main_files["README.md"].decode()
    local = load(run_copy)
    assert result["snippet_out"].splitlines()[0] == str(local(["Shares rose sharply after the results were "
                                                              "published."]))
    torch.testing.assert_close(torch.tensor(result["logits"]), local.logits(TEXTS), atol=1e-6, rtol=0)
    assert result["preds"] == json.loads(json.dumps(local(TEXTS)))
    assert Path(result["folder"]).is_relative_to(tmp_path / "hf_home")
    fetched = {p.split("/resolve/")[1].split("/", 1)[1] for m, p, _ in store.requests
               if m == "GET" and "/resolve/" in p}
    assert fetched == set(EXPECTED)  # every file came from the stand-in, none from elsewhere
    # the token authorised every write and was written nowhere
    writes = [r for r in store.requests if r[0] == "POST"]
    assert writes and all(auth == f"Bearer {TOKEN}" for _, _, auth in writes)
    assert TOKEN not in proc.stdout + proc.stderr
    for path in [*run_copy.rglob("*"), *(tmp_path / "hf_home").rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_offline_hub_id_not_cached_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert main(["predict", "nobody/nothing", "some text"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a run folder nor in the Hugging Face cache" in err


def test_push_while_offline_or_unreachable_is_one_line(run_copy, capsys):
    old_style = {**json.loads((run_copy / "adapter_config.json").read_text()), "task_type": None}
    (run_copy / "adapter_config.json").write_text(json.dumps(old_style))  # as saved before task_type was set
    before = {n: (run_copy / n).read_bytes() for n in ("README.md", "adapter_config.json")}
    # the test process runs with HF_HUB_OFFLINE=1 (conftest): huggingface_hub refuses to connect
    assert main(["push", str(run_copy), "--repo-id", "user/name"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adapters-kit: error: push to user/name failed: ")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "adapters_kit", "push", str(run_copy), "--repo-id", "user/name"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("adapters-kit: error: push to user/name failed: ")
    # the files a push rewrites for the Hub change locally only after an upload went through
    assert {n: (run_copy / n).read_bytes() for n in before} == before
