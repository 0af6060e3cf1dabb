"""``adapters-kit serve``: a real uvicorn server on a loopback port, driven by a real HTTP client."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from adapters_kit import AdapterTrainer, TrainConfig, load
from adapters_kit.cli import main
from adapters_kit.runs.pool import Pool, Request
from adapters_kit.serve.options import ServeSettings
from adapters_kit.serve.server import build_app
from tests.conftest import make_texts, write_csv
from tests.modality_fixtures import build_family, write_image_folder

TEXTS = [t for t, _ in make_texts(3, seed=9)][:6]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """Tiny runs on one base: two LoRA adapters (different seeds), two probes, and one IA3 (another PEFT type);
    plus an image probe on a tiny ViT."""
    d = tmp_path_factory.mktemp("serve-runs")
    train = write_csv(d / "train.csv", make_texts(20, seed=1))
    made = {}
    for name, method, seed in [("lora-a", "lora", 1), ("lora-b", "lora", 2), ("probe-a", "probe", 1),
                               ("probe-b", "probe", 3), ("ia3", "ia3", 1)]:
        cfg = TrainConfig(model=tiny_model_dir, data=f"train={train}", method=method, output=str(d / "runs" / name),
                          epochs=1, batch_size=8, max_length=32, lr=5e-3, seed=seed, probe_epochs=3)
        AdapterTrainer(cfg).train()
        made[name] = cfg.output
    vit = build_family("vit", str(tmp_path_factory.mktemp("vit")))
    images = write_image_folder(str(d / "images"), {"train": 6})
    cfg = TrainConfig(model=vit, data=images, method="probe", output=str(d / "runs" / "colours"), epochs=1,
                      batch_size=8)
    AdapterTrainer(cfg).train()
    made["colours"] = cfg.output
    return made


@contextmanager
def serving(settings: ServeSettings):
    """The app of ``settings`` on uvicorn in a thread, on a free loopback port; yields an httpx client on it."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(build_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def client(runs):
    settings = ServeSettings(run_dirs=[runs[n] for n in ("lora-a", "lora-b", "probe-a", "probe-b", "ia3", "colours")],
                             runs_dir=str(Path(runs["lora-a"]).parent), max_wait_ms=50, max_inputs=8)
    with serving(settings) as c:
        yield c


def scores(predictions) -> list[list[tuple[str, float]]]:
    return [[(p["label"], p["score"]) for p in (row if isinstance(row, list) else [row])] for row in predictions]


def assert_same(got, expected, tol=1e-5):
    for g, e in zip(scores(got), scores(expected), strict=True):
        assert [label for label, _ in g] == [label for label, _ in e]
        assert max(abs(a - b) for (_, a), (_, b) in zip(g, e)) <= tol


def png(colour) -> str:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_predictions_equal_load(client, runs):
    for name in ("lora-a", "lora-b", "probe-a", "ia3"):
        r = client.post("/v1/predict", json={"adapter": name, "inputs": TEXTS, "parameters": {"top_k": 2}})
        assert r.status_code == 200, r.text
        assert r.json()["adapter"] == name
        assert_same(r.json()["predictions"], load(runs[name])(TEXTS, top_k=2))


def test_images_as_base64_and_as_upload_equal_load(client, runs, tmp_path):
    from PIL import Image

    colours = [(200, 40, 40), (40, 60, 200)]
    expected = load(runs["colours"])([Image.new("RGB", (24, 24), c) for c in colours])
    r = client.post("/v1/predict", json={"adapter": "colours", "inputs": [png(c) for c in colours]})
    assert r.status_code == 200, r.text
    assert_same(r.json()["predictions"], expected)
    files = [("files", (f"{i}.png", base64.b64decode(png(c)), "image/png")) for i, c in enumerate(colours)]
    r = client.post("/v1/predict", data={"adapter": "colours"}, files=files)
    assert r.status_code == 200, r.text
    assert_same(r.json()["predictions"], expected)


def test_adapters_on_one_base_share_one_backbone(client):
    listed = {a["name"]: a for a in client.get("/v1/adapters").json()["adapters"]}
    assert listed["lora-a"]["shares_backbone_with"] == ["lora-b", "probe-a", "probe-b"]
    assert listed["ia3"]["shares_backbone_with"] == []  # another PEFT type: its own copy of the base
    assert listed["probe-a"]["trainable_parameters"] < listed["lora-a"]["trainable_parameters"]
    assert listed["colours"]["modality"] == "image" and listed["lora-a"]["task"] == "classification"


def test_mixed_adapter_batches_equal_per_adapter_answers(runs):
    """One pool.predict over requests for four adapters of one base equals each adapter alone, in fewer backbone
    passes than adapters: LoRA adapters mixed in a pass (PEFT's adapter_names), an input asked of both probes
    computed once."""
    pool = Pool(max_batch_size=64)
    for name in ("lora-a", "lora-b", "probe-a", "probe-b"):
        pool.load(runs[name])
    (backbone,) = pool.backbones
    passes = []
    handle = backbone.module.register_forward_pre_hook(
        lambda m, args, kwargs: passes.append((len(kwargs["input_ids"]), kwargs.get("adapter_names"))),
        with_kwargs=True)
    mixed = [Request(name, TEXTS[k:k + 3], TEXTS[k:k + 3], 2) for k, name in
             enumerate(["lora-a", "probe-a", "lora-b", "probe-b", "lora-a"])]
    together = pool.predict(mixed)
    handle.remove()
    distinct = {(r.adapter if r.adapter.startswith("lora") else "probes", t) for r in mixed for t in r.items}
    assert sum(n for n, _ in passes) == len(distinct) < sum(len(r.items) for r in mixed)
    assert len(passes) < 4 and any(names and len(set(names)) == 3 for _, names in passes)
    for got, request in zip(together, mixed):
        assert_same(got, pool.predict([request])[0])
        assert_same(got, load(runs[request.adapter])(request.items, top_k=2))


def test_concurrent_requests_for_several_adapters_are_batched(client, runs):
    before = _metric(client, "adapters_kit_batch_size_count")
    names = ["lora-a", "lora-b", "probe-a", "probe-b"] * 2
    answers = [None] * len(names)

    def ask(i):
        answers[i] = client.post("/v1/predict", json={"adapter": names[i], "inputs": TEXTS[:2]})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(names))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for name, r in zip(names, answers):
        assert r.status_code == 200, r.text
        assert_same(r.json()["predictions"], load(runs[name])(TEXTS[:2]))
    assert _metric(client, "adapters_kit_batch_size_count") - before < len(names)  # some requests shared a batch


def _metric(client, name: str, labels: str = "") -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return 0.0


def test_metrics_in_prometheus_format(client):
    client.post("/v1/predict", json={"adapter": "probe-a", "inputs": ["match goal"]})
    client.post("/v1/predict", json={"adapter": "nope", "inputs": ["match goal"]})
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert _metric(client, "adapters_kit_requests_total", '{adapter="probe-a",status="200"}') >= 1
    assert _metric(client, "adapters_kit_requests_total", '{adapter="unknown",status="404"}') >= 1
    assert _metric(client, "adapters_kit_adapters_loaded") == 6
    for series in ("adapters_kit_request_seconds_bucket", "adapters_kit_queue_depth", "adapters_kit_batch_size_sum"):
        assert series in r.text


BIG = "x" * (17 * 2**20)
BAD = [  # (what, request kwargs, status, start of the error)
    ("body not JSON", dict(content=b"{bad", headers={"content-type": "application/json"}), 400, "the request body"),
    ("no adapter", dict(json={"inputs": ["a"]}), 422, "adapter: Field required"),
    ("unknown adapter", dict(json={"adapter": "nope", "inputs": ["a"]}), 404, "no adapter named 'nope'"),
    ("no inputs", dict(json={"adapter": "lora-a"}), 422, "inputs: Field required"),
    ("empty inputs", dict(json={"adapter": "lora-a", "inputs": []}), 422, "inputs must be a non-empty list"),
    ("inputs not a list", dict(json={"adapter": "lora-a", "inputs": "a"}), 422, "inputs: Input should be"),
    ("number for a text", dict(json={"adapter": "lora-a", "inputs": ["a", 3]}), 422, "input 1: adapter 'lora-a' "
                                                                                      "reads texts"),
    ("too many inputs", dict(json={"adapter": "lora-a", "inputs": ["a"] * 9}), 422, "9 inputs in one request"),
    ("top_k 0", dict(json={"adapter": "lora-a", "inputs": ["a"], "parameters": {"top_k": 0}}), 422,
     "parameters.top_k"),
    ("text for an image run", dict(json={"adapter": "colours", "inputs": ["not base64!"]}), 422,
     "input 0: not valid base64"),
    ("bytes that are no image", dict(json={"adapter": "colours", "inputs": [base64.b64encode(b"abc").decode()]}),
     422, "input 0: not a readable image file"),
    ("files for a text run", dict(data={"adapter": "lora-a"}, files=[("files", ("a.png", b"x", "image/png"))]),
     422, "adapter 'lora-a' reads texts"),
    ("body too large", dict(content=BIG.encode(), headers={"content-type": "application/json"}), 413,
     "the request body is larger than 16 MB"),
]


@pytest.mark.parametrize("what, kwargs, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_one_line_and_the_server_keeps_serving(client, what, kwargs, status, message):
    r = client.post("/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error.startswith(message) and "\n" not in error
    assert client.get("/health").status_code == 200


def test_hot_load_and_unload(client, runs):
    r = client.post("/v1/adapters", json={"path": "lora-a", "name": "again"})
    assert r.status_code == 201, r.text
    assert r.json()["shares_backbone_with"] == ["lora-a", "lora-b", "probe-a", "probe-b"]
    r = client.post("/v1/predict", json={"adapter": "again", "inputs": TEXTS})
    assert_same(r.json()["predictions"], load(runs["lora-a"])(TEXTS))
    assert client.post("/v1/adapters", json={"path": "lora-a", "name": "again"}).status_code == 409
    assert client.delete("/v1/adapters/again").json() == {"unloaded": "again"}
    assert client.post("/v1/predict", json={"adapter": "again", "inputs": TEXTS}).status_code == 404
    assert client.delete("/v1/adapters/again").status_code == 404
    r = client.post("/v1/predict", json={"adapter": "lora-a", "inputs": TEXTS})  # the others still answer
    assert_same(r.json()["predictions"], load(runs["lora-a"])(TEXTS))


def test_hot_load_refuses_paths_outside_the_runs_dir(client, runs, tmp_path):
    runs_dir = Path(runs["lora-a"]).parent
    (runs_dir / "outside").symlink_to(tmp_path, target_is_directory=True)
    (runs_dir / "not-a-run").mkdir()
    try:
        for path, status, message in [("../runs/lora-a", 403, "path '../runs/lora-a' is refused"),
                                      (runs["lora-a"], 403, f"path {runs['lora-a']!r} is refused"),
                                      ("outside", 403, "path 'outside' leads outside --runs-dir"),
                                      ("lora-a/../../x", 403, "path 'lora-a/../../x' is refused"),
                                      ("not-a-run", 404, "'not-a-run' is not a run folder"),
                                      ("missing", 404, "no folder 'missing'")]:
            r = client.post("/v1/adapters", json={"path": path})
            assert (r.status_code, r.json()["error"][:len(message)]) == (status, message)
    finally:
        (runs_dir / "outside").unlink()
        (runs_dir / "not-a-run").rmdir()
    assert len(client.get("/v1/adapters").json()["adapters"]) == 6


def test_api_key_guards_loading_and_is_compared_not_logged(runs, monkeypatch, caplog):
    monkeypatch.setenv("SERVE_KEY", "s3cret")
    settings = ServeSettings(run_dirs=[runs["probe-a"]], runs_dir=str(Path(runs["probe-a"]).parent),
                             api_key_env="SERVE_KEY")
    with serving(settings) as c:
        assert c.post("/v1/adapters", json={"path": "probe-b"}).status_code == 401
        assert c.post("/v1/adapters", json={"path": "probe-b"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/adapters", json={"path": "probe-b"},
                      headers={"Authorization": "Bearer s3cret"}).status_code == 201
        assert c.delete("/v1/adapters/probe-b").status_code == 401
        assert c.delete("/v1/adapters/probe-b", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post("/v1/predict", json={"adapter": "probe-a", "inputs": ["a"]}).status_code == 200
    assert "s3cret" not in caplog.text


def test_full_queue_answers_503_and_a_slow_request_504(runs):
    settings = ServeSettings(run_dirs=[runs["probe-a"]], max_wait_ms=1500, max_queue=1, max_batch_size=64,
                             timeout_s=5)
    with serving(settings) as c:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=c.post("/v1/predict", json={"adapter": "probe-a",
                                                                                         "inputs": ["a"]})))
        t.start()
        time.sleep(0.5)  # the first request waits for a batch to fill
        r = c.post("/v1/predict", json={"adapter": "probe-a", "inputs": ["b"]})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"].startswith("1 requests are waiting (--max-queue 1)")
        t.join()
        assert first["r"].status_code == 200
    settings = ServeSettings(run_dirs=[runs["probe-a"]], max_wait_ms=1000, timeout_s=0.2)
    with serving(settings) as c:
        r = c.post("/v1/predict", json={"adapter": "probe-a", "inputs": ["a"]})
        assert (r.status_code, r.json()["error"]) == (504, "no answer within 0.2 s (--timeout-s)")
        assert c.get("/health").status_code == 200


def test_sigterm_drains_requests_in_flight(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "adapters_kit", "serve", runs["probe-a"], "--port", str(port),
                             "--max-wait-ms", "1500"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            while proc.poll() is None:  # loading, then binding
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            answer = {}
            t = threading.Thread(target=lambda: answer.update(r=c.post("/v1/predict", json={
                "adapter": "probe-a", "inputs": ["match goal"]})))
            t.start()
            time.sleep(0.5)  # in flight: waiting for its batch
            proc.send_signal(signal.SIGTERM)
            t.join(30)
        assert answer["r"].status_code == 200, answer["r"].text
        assert answer["r"].json()["predictions"][0]["label"] in ("business", "sport", "tech")
        assert proc.wait(30) == -signal.SIGTERM  # after draining, uvicorn ends by the signal it was sent
    finally:
        proc.kill()
        log = proc.stdout.read().decode()
    assert "Finished server process" in log


@pytest.mark.parametrize("argv, message", [
    (["serve"], "serve needs run folders to serve, or --runs-dir"),
    (["serve", "/no/such/run"], "run folder /no/such/run does not exist"),
    (["serve", "--runs-dir", ".", "--api-key-env", "ADAPTERS_KIT_NO_SUCH_VAR"],
     "--api-key-env ADAPTERS_KIT_NO_SUCH_VAR: the environment variable is unset or empty"),
    (["serve", "--runs-dir", ".", "--port", "70000"], "--port must be 0..65535"),
    (["serve", "a", "--name", "x", "--name", "y"], "2 --name given for 1 run folders"),
])
def test_bad_serve_command_lines_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"adapters-kit: error: {message}") and err.count("\n") == 1


def test_pool_refuses_bad_names(runs):
    pool = Pool()
    pool.load(runs["probe-a"], "p")
    with pytest.raises(Exception, match="an adapter named 'p' is already loaded"):
        pool.load(runs["probe-b"], "p")
    with pytest.raises(Exception, match="adapter name 'a.b' is not allowed"):
        pool.load(runs["probe-b"], "a.b")
    assert json.dumps(pool.served["p"].describe())  # JSON-ready


def test_playground_page_predicts_in_headless_chromium(client, runs):
    """Chromium (Debian's package, headless) loads the page, which picks the adapter and text given in its URL and
    predicts through the same code the button runs; the bars it draws are load()'s labels and scores."""
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed; make install installs it (apt-get install chromium)"
    url = f"{client.base_url}/?adapter=lora-b&text=market%20shares%20profit"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    rows = re.findall(r'class="row prediction"><span>([^<]+)</span>.*?<span>([0-9.]+)</span>', dom)
    expected = load(runs["lora-b"])("market shares profit", top_k=3)[0]
    assert rows == [(p["label"], f"{p['score']:.3f}") for p in expected] and len(rows) == 3


def test_audio_bytes_decode_to_the_runs_sampling_rate_and_bad_bytes_are_one_line():
    """Base64 audio (a WAV at 8 kHz) becomes the waveform an audio run reads at its own rate (16 kHz here)."""
    from io import BytesIO
    from types import SimpleNamespace

    import numpy as np
    import soundfile as sf

    from adapters_kit.serve import inputs

    served = SimpleNamespace(name="speech", words=False, parts=SimpleNamespace(
        modality=SimpleNamespace(name="audio"), processor=SimpleNamespace(sampling_rate=16000), info={}))
    wave = np.sin(np.linspace(0, 200 * np.pi, 8000)).astype(np.float32)
    buf = BytesIO()
    sf.write(buf, wave, 8000, format="WAV")
    b64 = base64.b64encode(buf.getvalue()).decode()
    items, keys = inputs.parse(served, [b64, f"data:audio/wav;base64,{b64}"], max_inputs=4)
    assert [len(x) for x in items] == [16000, 16000] and keys[0] == keys[1]
    with pytest.raises(inputs.InputError, match=r"^input 0: not a readable audio file \("):
        inputs.parse(served, [base64.b64encode(b"RIFF....").decode()], max_inputs=4)


def test_unloading_the_last_adapter_of_a_base_leaves_its_probes_answering(runs):
    pool = Pool()
    pool.load(runs["probe-a"])
    pool.load(runs["lora-a"])
    pool.unload("lora-a")  # the PeftModel is taken off the base: the probe reads the plain model again
    assert_same(pool.predict([Request("probe-a", TEXTS)])[0], load(runs["probe-a"])(TEXTS))
    pool.load(runs["lora-b"])
    got = pool.predict([Request("lora-b", TEXTS), Request("probe-a", TEXTS)])
    assert_same(got[0], load(runs["lora-b"])(TEXTS))
    assert_same(got[1], load(runs["probe-a"])(TEXTS))
    with pytest.raises(Exception, match="does not exist"):
        pool.load(runs["lora-a"] + "-missing")
    pool.unload("lora-b")
    pool.unload("probe-a")
    assert pool.backbones == [] and pool.served == {}
