"""Bad flags and config values, one table: each command line fails in one line (exit 2, no traceback) before
anything is written; then the Hub cases (unreachable, missing repo, cached) through a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from adapters_kit.cli import main
from tests.cli_cases import assert_one_line_error
from tests.conftest import make_texts, write_csv
from tests.modality_fixtures import build_family

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    """Inputs every case reads (made once, outside the watched folder) and the empty folder the cases watch."""
    inputs = tmp_path_factory.mktemp("flags_inputs")
    w = {"model": tiny_model_dir, "train": write_csv(inputs / "train.csv", make_texts(10, seed=3)),
         "roberta": build_family("roberta", str(inputs / "roberta")), "out": tmp_path_factory.mktemp("flags_out")}
    for name, text in {"bool_epochs": "epochs: true", "yes_batch": "batch_size: yes", "yes_method": "method: yes",
                       "inf_lr": "lr: .inf"}.items():
        (inputs / f"{name}.yaml").write_text(f"# adapters-kit train --config {name}.yaml\n{text}\n")
        w[name] = str(inputs / f"{name}.yaml")
    return w


def train(*extra, model="model"):
    return lambda w: ["train", "--model", w[model], "--data", w["train"], "--output", str(w["out"] / "run"), *extra]


def config(name):
    return lambda w: ["train", "--config", w[name], "--model", w["model"], "--data", w["train"], "--output",
                      str(w["out"] / "run")]


def sweep(space, *extra):
    return lambda w: ["sweep", "--model", w["model"], "--data", w["train"], "--method", "probe", "--output",
                      str(w["out"] / "sweep"), "--space", space, *extra]


def push(repo_id, *extra):
    return lambda w: ["push", str(w["out"] / "no-run"), "--repo-id", repo_id, *extra]


CASES = [
    # 1. argparse's complaints, one line each, naming the command's help
    ("non-numeric epochs", train("--epochs", "x"),
     "argument --epochs: invalid int value: 'x'; see adapters-kit train --help"),
    ("non-numeric lr", train("--lr", "fast"), "argument --lr: invalid float value: 'fast'"),
    ("unknown flag", train("--nope", "1"), "unrecognized arguments: --nope 1; see adapters-kit train --help"),
    ("unknown sweep flag", sweep("lr=0.01,0.1", "--trails", "3"),
     "unrecognized arguments: --trails 3; see adapters-kit sweep --help"),
    ("non-numeric trials", sweep("lr=0.01,0.1", "--trials", "many"),
     "argument --trials: invalid int value: 'many'; see adapters-kit sweep --help"),
    ("eval without --data", lambda w: ["eval", str(w["out"] / "run")],
     "the following arguments are required: --data; see adapters-kit eval --help"),
    ("export to an unknown format", lambda w: ["export", str(w["out"] / "run"), "--to", "tar", "--output",
                                               str(w["out"] / "x")], "argument --to: invalid choice: 'tar'"),
    ("unknown command", lambda w: ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("no command", lambda w: [], "the following arguments are required: command; see adapters-kit --help"),
    # 2. values of the wrong type are refused, not turned into 1 or infinity
    ("YAML epochs: true", config("bool_epochs"), "epochs must be an integer, got True"),
    ("YAML batch_size: yes", config("yes_batch"), "batch_size must be an integer, got True"),
    ("YAML method: yes", config("yes_method"), "method must be a string, got True"),
    ("YAML lr: .inf", config("inf_lr"), "lr must be a finite number, got inf"),
    ("infinite lr", train("--lr", "inf"), "lr must be a finite number, got inf"),
    ("nan weight decay", train("--weight-decay", "nan"), "weight_decay must be a finite number, got nan"),
    ("negative seed", train("--seed", "-1"), "seed must be in 0..4294967295"),
    ("seed beyond numpy's range", train("--seed", str(2**32)), "seed must be in 0..4294967295"),
    ("bool flag that is not true/false", train("--flip", "maybe"), "flip must be true or false, got 'maybe'"),
    # 3. more tokens than the model's position table holds
    ("max length above the positions", train("--max-length", "65"),
     "--max-length 65 is more than model"),
    ("max length names both numbers", train("--max-length", "512"),
     "takes: 64 tokens (max_position_embeddings 64); use --max-length 64 or less"),
    ("max length with RoBERTa's padding offset", train("--max-length", "40", model="roberta"),
     "takes: 39 tokens (max_position_embeddings 40 less 1 for the padding offset of roberta)"),
    # 4. repo ids by the Hub's own rules, dry runs included
    ("repo id without a user", push("no-slash", "--dry-run"),
     "argument --repo-id: 'no-slash' must look like user/name"),
    ("repo id with three parts", push("a/b/c"), "must look like user/name; see adapters-kit push --help"),
    ("repo id with a double dash", push("user/x--y", "--dry-run"), "is not a valid Hub repo id (Cannot have -- or .."),
    ("repo id too long", push("user/" + "a" * 100, "--dry-run"), "the maximum length is 96"),
    ("card repo id starting with a dash", lambda w: ["card", str(w["out"] / "run"), "--repo-id", "user/-x"],
     "is not a valid Hub repo id"),
    # 5. a sweep space that does not parse or that the config would refuse: refused before any trial
    ("space value not a number", sweep("lr=abc"), "bad --space value in 'lr=abc': lr must be a finite number"),
    ("space range bound not a number", sweep("lr=1..x"), "bad --space range '1..x' for lr: write low..high"),
    ("space choices not integers", sweep("lora_r=a,b"), "lora_r must be an integer, got 'a'"),
    ("space value the config refuses", sweep("epochs=0,1"), "bad --space value epochs=0: epochs must be a positive"),
    ("space name not a field", sweep("nope=1,2"), "--space names 'nope', which is not a hyper-parameter"),
    ("space range over a text field", sweep("pooling=1..2"), "bad --space range for pooling: it is not a number"),
    ("space choice of an unknown name", sweep("pooling=mean,max"), "unknown pooling 'max'"),
    ("space choice above the model's positions", sweep("max_length=16,128"),
     "bad --space value max_length=128: --max-length 128 is more than model"),
    ("no trials", sweep("lr=0.01,0.1", "--trials", "0"), "--trials must be a positive integer"),
    ("unknown sampler", sweep("lr=0.01,0.1", "--sampler", "bayes"), "unknown --sampler 'bayes'"),
    # 6. offline: an uncached Hub id is refused at once, without asking the Hub
    ("uncached Hub id while offline", lambda w: ["train", "--model", "someone/not-cached-anywhere", "--data",
                                                 w["train"], "--output", str(w["out"] / "run")],
     "and offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE), so the Hub was not asked"),
]


@pytest.mark.parametrize("name, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_flag_is_one_line_and_writes_nothing(world, capsys, name, argv, message):
    assert_one_line_error(main, argv(world), message, capsys, world["out"])


def test_help_is_still_the_full_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and out.startswith("usage: adapters-kit train")
    assert "--max-length" in out and "--resume" in out and len(out.splitlines()) > 40


def test_a_type_error_from_python_is_refused_too():
    from adapters_kit import TrainConfig, UserError

    for bad in (dict(epochs=True), dict(lr=float("nan")), dict(seed=-1), dict(flip="false"), dict(method=1)):
        with pytest.raises(UserError):
            TrainConfig(**bad)
    assert TrainConfig(lr=1).lr == 1  # an int is a fine float


def test_max_length_not_given_fits_the_model(world):
    from adapters_kit.config import TrainConfig
    from adapters_kit.trainer import resolve_config

    assert resolve_config(TrainConfig(model=world["model"])).max_length == 64  # 128, lowered to its positions
    assert resolve_config(TrainConfig(model=world["roberta"])).max_length == 39
    assert resolve_config(TrainConfig(model=world["model"], max_length=64)).max_length == 64


# -- the Hub, through the console script's real code in a fresh process (no offline mode, as users run it) --

class ClosingServer:
    """A TCP port that accepts connections and closes them at once, counting them: a Hub that never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.connections = 0
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


class MissingRepoHub(BaseHTTPRequestHandler):
    """Answers every request as the Hub answers for a repo that does not exist."""

    requests: list = []

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.requests.append(self.path)
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


def run_online(argv: list[str], endpoint: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN",
                                                             "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(ROOT),
               HF_HUB_DISABLE_TELEMETRY="1")
    code = f"import sys\nfrom adapters_kit.cli import main\nsys.exit(main({argv!r}))\n"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_unreachable_hub_fails_at_once_in_one_line(text_files, tmp_path):
    hub = ClosingServer()
    try:
        r = run_online(["train", "--model", "no-such-model", "--data", f"train={text_files['train']}", "--output",
                        str(tmp_path / "out")], hub.endpoint, tmp_path)
    finally:
        hub.close()
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and "Retrying" not in r.stderr, r.stderr  # no huggingface_hub retry warnings
    assert lines[0].startswith("adapters-kit: error: cannot load model 'no-such-model': it is not a built-in")
    assert f"the Hub ({hub.endpoint}) is unreachable" in lines[0] and "pass a local checkpoint folder" in lines[0]
    assert 1 <= hub.connections <= 2, hub.connections
    assert not (tmp_path / "out").exists()


def test_a_repo_the_hub_does_not_have_is_one_line(text_files, tmp_path):
    MissingRepoHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), MissingRepoHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        r = run_online(["train", "--model", "nobody/missing", "--data", f"train={text_files['train']}", "--output",
                        str(tmp_path / "out")], endpoint, tmp_path)
    finally:
        server.shutdown()
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip("\n").splitlines()) == 1, r.stderr
    assert f"the Hub ({endpoint}) has no model repo 'nobody/missing' that this login can read (HTTP 404)" in r.stderr
    assert MissingRepoHub.requests == ["/nobody/missing/resolve/main/config.json"]


def test_a_model_in_the_hub_cache_trains_without_the_network(tiny_model_dir, text_files, tmp_path):
    """The Hugging Face cache layout (models--org--name/snapshots/<commit>/ + refs/main), the Hub unreachable and
    offline mode off: the cached snapshot is used as is and not one connection is attempted."""
    commit = "1" * 40
    repo = tmp_path / "hf_home" / "hub" / "models--test-org--tiny-bert"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    hub = ClosingServer()
    out = tmp_path / "run"
    try:
        r = run_online(["train", "--model", "test-org/tiny-bert", "--data", f"train={text_files['train']}",
                        "--method", "lora", "--epochs", "1", "--output", str(out)], hub.endpoint, tmp_path)
    finally:
        hub.close()
    assert r.returncode == 0, r.stderr
    assert hub.connections == 0
    trained = json.loads((out / "train_config.json").read_text())
    assert trained["model"] == "test-org/tiny-bert" and trained["max_length"] == 64
    assert json.loads((out / "run_info.json").read_text())["backbone_path"] == str(repo / "snapshots" / commit)
    # what AutoPeftModel and the Hub resolve on another machine: the id, not this machine's cache path
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "test-org/tiny-bert"
