"""One toolkit across modalities: every backbone family trains with LoRA and probe, saves its head, and reloads to
identical predictions; image and audio data load from folders and tables, with bad files handled."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from adapters_kit import AdapterTrainer, TrainConfig, load
from adapters_kit.cli import main
from adapters_kit.data.media import read_audio
from adapters_kit.data.splits import load_splits
from adapters_kit.errors import UserError
from adapters_kit.modalities import get_modality, model_modality
from tests.modality_fixtures import COLOURS, TONES, blob_image, build_family, write_audio_folder, write_image_folder

TEXT_FAMILIES = ("roberta", "deberta-v2", "llama")
IMAGE_FAMILIES = ("vit", "resnet", "convnext", "mobilenet_v2")
AUDIO_FAMILIES = ("wav2vec2", "hubert", "whisper")


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    made = {}

    def get(name: str) -> str:
        if name not in made:
            made[name] = build_family(name, str(tmp_path_factory.mktemp(name.replace("-", "_"))))
        return made[name]

    return get


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> str:
    return write_image_folder(str(tmp_path_factory.mktemp("images")), {"train": 14, "test": 4})


@pytest.fixture(scope="session")
def audio_root(tmp_path_factory) -> str:
    return write_audio_folder(str(tmp_path_factory.mktemp("audio")), {"train": 10, "test": 3})


@pytest.fixture(scope="session")
def text_root(tmp_path_factory) -> str:
    """A text folder (``<class>/*.txt``) in the tiny families' vocabulary."""
    root = tmp_path_factory.mktemp("texts")
    words = {"sport": "match goal team", "business": "market shares profit", "tech": "software data chip"}
    rng = np.random.default_rng(0)
    for label, ws in words.items():
        (root / label).mkdir()
        for i in range(16):
            toks = list(rng.choice(ws.split() + ["the", "a", "of"], size=int(rng.integers(3, 8))))
            (root / label / f"{i}.txt").write_text(" ".join(toks))
    return str(root)


def data_for(family: str, image_root: str, audio_root: str, text_root: str) -> tuple[str, list]:
    if family in IMAGE_FAMILIES:
        return image_root, sorted(str(p) for p in __import__("pathlib").Path(image_root, "test").glob("*/*"))[:5]
    if family in AUDIO_FAMILIES:
        return audio_root, sorted(str(p) for p in __import__("pathlib").Path(audio_root, "test").glob("*/*"))[:5]
    return text_root, ["match goal the team", "market profit of shares", "software data a chip"]


@pytest.mark.parametrize("method", ["lora", "probe"])
@pytest.mark.parametrize("family", TEXT_FAMILIES + IMAGE_FAMILIES + AUDIO_FAMILIES)
def test_family_trains_saves_and_reloads_identically(family, method, family_dir, image_root, audio_root, text_root,
                                                    tmp_path):
    data, inputs = data_for(family, image_root, audio_root, text_root)
    cfg = TrainConfig(model=family_dir(family), data=data, method=method, output=str(tmp_path / "run"), epochs=1,
                      batch_size=8, lr=5e-3, max_length=16, lora_r=2)
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    assert metrics["test"]["n"] > 0
    model = trainer.model
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    if method == "lora":
        # adapted layers are inside the blocks; for CNNs that means convolutions
        assert trainable and all("lora_" in n for n in trainable)
        if family in ("resnet", "mobilenet_v2"):
            assert any("convolution.lora_A" in n for n in trainable)
    else:
        assert trainable == []
    expected = trainer.classifier().logits(inputs)
    reloaded = load(cfg.output)
    assert torch.allclose(reloaded.logits(inputs), expected, atol=1e-5)
    assert [r["label"] for r in reloaded(inputs)] == [reloaded.labels[i] for i in expected.argmax(-1).tolist()]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["modality"] == model_modality(family_dir(family))


@pytest.mark.parametrize("family", ["llama", "mobilenet_v2", "whisper"])
def test_autoencoder_pretrain_per_modality_reloads_identically(family, family_dir, image_root, audio_root, text_root,
                                                                tmp_path):
    """The reconstruction stage suits each input (masked tokens for a decoder LM without a mask token, masked
    image cells, masked spectrogram chunks); the run saves the adapter and reloads to the same logits."""
    data, inputs = data_for(family, image_root, audio_root, text_root)
    cfg = TrainConfig(model=family_dir(family), data=data, method="autoencoder-pretrain", output=str(tmp_path / "r"),
                      epochs=1, pretrain_epochs=1, batch_size=8, lr=5e-3, max_length=16, lora_r=2)
    trainer = AdapterTrainer(cfg)
    stage = trainer.train()["train"]["pretrain_stage"]
    assert stage["objective"] == ("masked-token" if family == "llama" else "masked-patch")
    assert all(math.isfinite(x) and x > 0 for x in stage["reconstruction_loss"])
    assert torch.allclose(load(cfg.output).logits(inputs), trainer.classifier().logits(inputs), atol=1e-5)


def test_default_pooling_per_family(family_dir):
    from transformers import AutoConfig

    expected = {"roberta": "mean", "deberta-v2": "mean", "llama": "last", "vit": "cls", "resnet": "pooler",
                "convnext": "pooler", "mobilenet_v2": "pooler", "wav2vec2": "mean", "hubert": "mean",
                "whisper": "mean"}
    for family, pooling in expected.items():
        path = family_dir(family)
        assert get_modality(model_modality(path)).default_pooling(AutoConfig.from_pretrained(path)) == pooling


def test_whisper_clip_is_the_longest_training_clip_and_the_position_table_is_cut(family_dir, audio_root, tmp_path):
    longest = max(sf.info(str(p)).duration for p in __import__("pathlib").Path(audio_root, "train").glob("*/*"))
    cfg = TrainConfig(model=family_dir("whisper"), data=audio_root, method="probe", output=str(tmp_path / "run"),
                      epochs=1, batch_size=8)
    trainer = AdapterTrainer(cfg)
    trainer.train()
    seconds = math.ceil(longest)
    assert trainer.cfg.audio_seconds == seconds
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["audio_seconds"] == seconds
    assert json.loads((tmp_path / "run" / "preprocessor_config.json").read_text())["chunk_length"] == seconds
    encoder = load(cfg.output).model.backbone
    assert encoder.embed_positions.weight.shape[0] == seconds * 50  # 100 mel frames/s, conv stride 2
    # the cut table is the start of the pretrained one
    from transformers import WhisperModel

    full = WhisperModel.from_pretrained(family_dir("whisper")).encoder.embed_positions.weight
    assert torch.equal(encoder.embed_positions.weight, full[:seconds * 50])


# ----------------------------------------------------------------------------------------------- data
def test_image_folder_splits_labels_and_rgb(family_dir, image_root):
    modality = get_modality("image")
    splits = load_splits(TrainConfig(model=family_dir("vit"), data=image_root), modality)
    assert splits.labels.names == tuple(sorted(COLOURS))
    assert splits.kind == "image"
    assert set(splits.datasets) == {"train", "validation", "test"}
    assert len(splits.datasets["test"]) == 3 * 4
    processor = modality.load_processor(family_dir("vit"))
    prepared = modality.prepare(splits.datasets["test"], processor, "test", train=False)
    batch = modality.collator(processor)([prepared[i] for i in range(len(prepared))])
    assert batch["pixel_values"].shape == (12, 3, 32, 32)  # grayscale and palette files became RGB
    assert batch["labels"].tolist() == splits.datasets["test"]["label"]


def test_augmentation_only_in_training_and_switchable(family_dir, image_root):
    from adapters_kit.data.splits import prepare
    from adapters_kit.trainer import resolve_config

    # the method's default (on for methods that train the backbone) is filled in when a run starts
    cfg = resolve_config(TrainConfig(model=family_dir("vit"), data=image_root, method="lora"))
    modality = get_modality("image", cfg)
    processor = modality.load_processor(family_dir("vit"))
    splits = load_splits(cfg, modality)
    prepared = prepare(splits.datasets, modality, processor)
    first = np.stack(prepared["train"][:4]["pixel_values"])
    again = np.stack(prepared["train"][:4]["pixel_values"])
    assert not np.allclose(first, again)  # random crops / flips differ per read
    plain = np.stack(processor([modality.read(p, processor) for p in splits.datasets["train"]["input"][:4]],
                               return_tensors="np")["pixel_values"])
    test_inputs = splits.datasets["test"]["input"][:4]
    evaluated = np.stack(prepared["test"][:4]["pixel_values"])
    assert np.allclose(evaluated, processor([modality.read(p, processor) for p in test_inputs],
                                            return_tensors="np")["pixel_values"])
    off = get_modality("image", cfg.replace(augment=False))
    unaugmented = off.prepare(splits.datasets["train"], processor, "train", train=True)
    assert np.allclose(np.stack(unaugmented[:4]["pixel_values"]), plain)
    assert not get_modality("image", resolve_config(cfg.replace(method="probe", augment=None))).augmenting()


def test_csv_with_relative_paths(family_dir, image_root, tmp_path):
    folder = tmp_path / "table"
    shutil.copytree(image_root, folder / "files")
    rows = ["image,colour"] + [f"files/{p.relative_to(folder / 'files').as_posix()},{p.parent.name}"
                               for p in sorted((folder / "files" / "train").glob("*/*"))]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    splits = load_splits(TrainConfig(model=family_dir("vit"), data=str(folder / "train.csv"), label_column="colour"),
                         get_modality("image"))
    assert splits.input_column == "image" and splits.label_column == "colour"
    assert all(os.path.isabs(p) and os.path.exists(p) for p in splits.datasets["train"]["input"])


def test_duplicate_files_are_dropped_by_content(family_dir, tmp_path):
    root = write_image_folder(str(tmp_path / "imgs"), {"train": 6, "test": 2})
    src = os.path.join(root, "test", "red", "000.png")
    shutil.copy(src, os.path.join(root, "train", "red", "copy-of-test.png"))
    splits = load_splits(TrainConfig(model=family_dir("vit"), data=root), get_modality("image"))
    assert splits.report["duplicates_dropped"]["train"] == 1


def test_a_few_corrupt_files_are_skipped_and_reported(family_dir, tmp_path, caplog):
    root = write_image_folder(str(tmp_path / "imgs"), {"train": 40, "test": 3})
    (tmp_path / "imgs" / "train" / "red" / "broken.png").write_bytes(b"not an image at all")
    cfg = TrainConfig(model=family_dir("vit"), data=root, method="probe", output=str(tmp_path / "run"), epochs=1)
    with caplog.at_level("WARNING"):
        AdapterTrainer(cfg).train()
    assert "skipping 1 unreadable images file(s) in train" in caplog.text and "broken.png" in caplog.text


def test_many_corrupt_files_stop_the_run_with_one_line(family_dir, tmp_path, capsys):
    root = write_image_folder(str(tmp_path / "imgs"), {"train": 5, "test": 2})
    for i in range(3):
        (tmp_path / "imgs" / "train" / "blue" / f"bad{i}.jpg").write_bytes(b"\xff\xd8 truncated")
    code = main(["train", "--model", family_dir("vit"), "--data", root, "--method", "probe", "--output",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "cannot be read as images" in err[0] and "more than 1% are bad" in err[0]
    assert not (tmp_path / "run").exists()


def test_image_data_with_a_text_model_is_refused(tiny_model_dir, image_root):
    with pytest.raises(UserError, match="holds image but model .* takes text"):
        load_splits(TrainConfig(model=tiny_model_dir, data=image_root), get_modality("text"))


def test_read_audio_mixes_to_mono_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1).astype(np.float32), 44100)
    wave = read_audio(str(tmp_path / "s.wav"), 16000)
    assert wave.dtype == np.float32 and len(wave) == 16000
    expected = 0.75 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(wave[200:-200] - expected[200:-200]).max() < 1e-2


def test_predict_cli_labels_image_files(family_dir, image_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--model", family_dir("resnet"), "--data", image_root, "--method", "probe", "--epochs", "3",
                 "--output", out]) == 0
    capsys.readouterr()
    rng = np.random.default_rng(5)
    path = tmp_path / "query.png"
    blob_image(COLOURS["green"], rng, (30, 30)).save(path)
    assert main(["predict", out, str(path)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert line["label"] in COLOURS and line["text"] == str(path)[:80]


def test_audio_labels_are_tone_names(audio_root, family_dir):
    splits = load_splits(TrainConfig(model=family_dir("wav2vec2"), data=audio_root), get_modality("audio"))
    assert splits.labels.names == tuple(sorted(TONES)) and splits.kind == "audio"


def test_eval_of_an_image_run_writes_metrics_and_mistakes(family_dir, image_root, tmp_path, capsys):
    import csv

    out = str(tmp_path / "run")
    # barely trained (one epoch at a tiny learning rate), so there are mistakes to list
    assert main(["train", "--model", family_dir("vit"), "--data", image_root, "--method", "probe", "--epochs", "1",
                 "--lr", "1e-5", "--output", out]) == 0
    assert main(["eval", out, "--data", image_root, "--split", "test", "--errors", "50"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert metrics["n"] == 12
    with open(tmp_path / "run" / "errors_test.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert 0 < len(rows) == round(12 * (1 - metrics["accuracy"]))
    assert all(os.path.isfile(r["input"]) and r["true"] != r["predicted"] for r in rows)


def test_a_corrupt_audio_file_is_skipped(family_dir, tmp_path, caplog):
    root = write_audio_folder(str(tmp_path / "snd"), {"train": 40, "test": 2})
    (tmp_path / "snd" / "train" / "low" / "empty.wav").write_bytes(b"RIFF\x00\x00")
    cfg = TrainConfig(model=family_dir("wav2vec2"), data=root, method="probe", output=str(tmp_path / "run"), epochs=1)
    with caplog.at_level("WARNING"):
        AdapterTrainer(cfg).train()
    assert "skipping 1 unreadable audio file(s) in train" in caplog.text and "empty.wav" in caplog.text


# ----------------------------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def exported_runs(family_dir, image_root, audio_root, tmp_path_factory):
    """A LoRA run per image/audio family, with its merged and ONNX exports."""
    from adapters_kit.share.export import export_run

    runs = {}
    for family in ("vit", "mobilenet_v2", "wav2vec2", "whisper"):
        root = tmp_path_factory.mktemp(f"export_{family}")
        data = image_root if family in IMAGE_FAMILIES else audio_root
        cfg = TrainConfig(model=family_dir(family), data=data, method="lora", output=str(root / "run"), epochs=1,
                          batch_size=8, lr=5e-3, lora_r=2)
        AdapterTrainer(cfg).train()
        checks = {to: export_run(cfg.output, to, root / to)["checks"] for to in ("merged", "onnx", "int8")}
        runs[family] = (root, data, checks)
    return runs


@pytest.mark.parametrize("family", ["vit", "mobilenet_v2", "wav2vec2", "whisper"])
def test_merged_and_onnx_exports_match_the_run_on_real_files(family, exported_runs):
    import transformers

    from adapters_kit.data.splits import make_loader, prepare
    from adapters_kit.runs.checkpoint import load_run
    from adapters_kit.share.export import load_int8, load_merged, onnx_predictor

    root, data, checks = exported_runs[family]
    assert "limit 1e-4" in checks["merged"][0] and "limit 0.001" in checks["onnx"][0]
    run = load_run(root / "run")
    splits = load_splits(run.cfg.replace(data=data), run.modality, labels=run.labels)
    loader = make_loader(prepare(splits.datasets["test"], run.modality, run.processor),
                         run.modality.collator(run.processor), 4, shuffle=False)
    merged = load_merged(root / "merged")
    auto = {"image": transformers.AutoModelForImageClassification,
            "audio": transformers.AutoModelForAudioClassification}[run.modality.name]
    assert type(merged).__name__ == "AdaptersKitClassifier" and auto.__name__ in merged.config.auto_map
    assert merged.config.id2label == dict(enumerate(run.labels.names))
    onnx, int8 = onnx_predictor(root / "onnx" / "model.onnx"), load_int8(root / "int8")
    with torch.inference_mode():
        for batch in loader:
            batch.pop("labels")
            expected = run.model(**batch)
            assert torch.allclose(merged(**batch).logits, expected, atol=1e-4)
            assert torch.allclose(onnx(batch), expected, atol=1e-3)
            assert (int8(**batch) - expected).abs().max() < 0.05  # int8 weights: close, not exact


def test_plain_peft_loads_an_image_adapter(family_dir, exported_runs):
    from peft import PeftModel
    from transformers import AutoModel

    from adapters_kit.runs.checkpoint import load_run
    from adapters_kit.share.export import _sample_batches

    root = exported_runs["vit"][0]
    run = load_run(root / "run")
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(family_dir("vit")), str(root / "run")).eval()
    batch = _sample_batches(run)[1]
    with torch.inference_mode():
        hidden = peft_model(**batch).last_hidden_state[:, 0]
        assert torch.allclose(run.model.head(hidden), run.model(**batch), atol=1e-5)


def test_model_card_of_an_audio_run_has_its_pipeline_tag(exported_runs):
    card = (exported_runs["whisper"][0] / "run" / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card and "audio clips" in card
    card = (exported_runs["vit"][0] / "run" / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card
