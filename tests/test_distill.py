"""Knowledge distillation: the loss against an independent computation, the teacher-output cache, the layer-pruned
student's initial weights, teacher-labelled inputs whose labels are never read, the student as an ordinary run
folder (reload, export, card, compare) and the refusals."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from adapters_kit.cli import main
from adapters_kit.config import TrainConfig
from adapters_kit.tasks import get_task
from adapters_kit.tasks.labels import LabelMap
from tests.cli_cases import assert_one_line_error
from tests.conftest import FILLER, TOPICS, make_texts, write_csv


@pytest.fixture(scope="module")
def deep_model_dir(tmp_path_factory) -> str:
    """A tiny random BERT of four blocks (the shared tiny model has two: too few to keep some of)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert-4")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
        {w for ws in TOPICS.values() for w in ws} | set(FILLER))
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(str(d))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(str(d))
    return str(d)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("distill-data")
    return {"train": write_csv(root / "train.csv", make_texts(30, seed=1)),
            "test": write_csv(root / "test.csv", make_texts(8, seed=2)),
            "unlabelled": write_csv(root / "more.csv", make_texts(10, seed=3))}


@pytest.fixture(scope="module")
def teacher(deep_model_dir, data, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("teacher") / "run"
    argv = ["train", "--model", deep_model_dir, "--data", f"train={data['train']},test={data['test']}",
            "--output", str(out), "--method", "lora", "--epochs", "2", "--lr", "5e-3", "--batch-size", "8",
            "--max-length", "32"]
    assert main(argv) == 0
    return str(out)


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    """The default student (half the teacher's blocks, full training), trained through the CLI."""
    out = tmp_path_factory.mktemp("student") / "run"
    assert main(["distill", teacher, "--output", str(out), "--epochs", "2", "--lr", "1e-3", "--batch-size", "8"]) == 0
    return out


# ------------------------------------------------------------------------------------------------------------ loss
def _labels(names, **params):
    return LabelMap(tuple(names), params)


def test_classification_soft_loss_is_temperature_scaled_kl():
    task = get_task("classification", _labels("abc"))
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) * 3
    for temp in (1.0, 2.0, 4.0):
        pt = np.exp(t / temp) / np.exp(t / temp).sum(1, keepdims=True)
        ps = np.exp(s / temp) / np.exp(s / temp).sum(1, keepdims=True)
        expected = (pt * (np.log(pt) - np.log(ps))).sum(1).mean() * temp ** 2
        got = task.distill_loss(torch.tensor(s, dtype=torch.float64), torch.tensor(t), temp)
        assert float(got) == pytest.approx(expected, rel=1e-9)
    assert float(task.distill_loss(torch.tensor(t), torch.tensor(t), 2.0)) == pytest.approx(0.0, abs=1e-12)


def test_multilabel_and_regression_soft_losses():
    ml = get_task("multi-label", _labels("xyz"))
    rng = np.random.default_rng(1)
    s, t, temp = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) * 2, 3.0
    p, q = 1 / (1 + np.exp(-t / temp)), 1 / (1 + np.exp(-s / temp))
    bernoulli_kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    got = ml.distill_loss(torch.tensor(s), torch.tensor(t), temp)
    assert float(got) == pytest.approx(bernoulli_kl.mean() * temp ** 2, rel=1e-9)
    reg = get_task("regression", _labels(["y"], mean=[0.0], std=[1.0]))
    a, b = rng.normal(size=(6, 1)), rng.normal(size=(6, 1))
    assert float(reg.distill_loss(torch.tensor(a), torch.tensor(b), 5.0)) == pytest.approx(((a - b) ** 2).mean())


def test_objective_mixes_the_gold_loss_only_where_labels_may_be_read():
    from adapters_kit.methods.distillation import LABELLED, TEACHER, Distillation

    task = get_task("classification", _labels("abc"))
    rng = np.random.default_rng(2)
    logits, teacher = torch.tensor(rng.normal(size=(6, 3))), torch.tensor(rng.normal(size=(6, 3)))
    labels, labelled = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([1, 1, 0, 1, 0, 0])
    model = lambda x: x  # noqa: E731  (the "model" returns its input: the logits)
    for alpha in (0.0, 0.5, 2.0):
        batch = {"x": logits, TEACHER: teacher, LABELLED: labelled}
        got = Distillation(task, 2.0, alpha).loss(model, batch, labels, 0.0)
        m = labelled.bool()
        gold = torch.nn.functional.cross_entropy(logits[m], labels[m])
        assert float(got) == pytest.approx(float(task.distill_loss(logits, teacher, 2.0) + alpha * gold))
    # a batch of teacher-labelled inputs only: the soft loss alone
    batch = {"x": logits, TEACHER: teacher, LABELLED: torch.zeros(6, dtype=torch.long)}
    assert float(Distillation(task, 2.0, 1.0).loss(model, batch, labels, 0.0)) == pytest.approx(
        float(task.distill_loss(logits, teacher, 2.0)))


# -------------------------------------------------------------------------------------------------- pruned student
def test_layer_map_spaces_blocks_evenly_or_takes_the_given_map():
    from adapters_kit.distill.student import layer_map
    from adapters_kit.errors import UserError

    assert layer_map(6, 3, None) == [0, 2, 5] and layer_map(12, 6, None) == [0, 2, 4, 7, 9, 11]
    assert layer_map(6, 6, None) == list(range(6)) and layer_map(6, 1, None) == [0]
    assert layer_map(6, None, "1,3,5") == [1, 3, 5] and layer_map(6, 3, "0,1,2") == [0, 1, 2]
    for keep, given, message in ((7, None, "--student-layers must be in 1..6"), (0, None, "1..6"),
                                 (None, "0,6", "in 0..5"), (None, "3,1", "distinct increasing"),
                                 (None, "a,b", "comma-separated block indices"), (2, "0,1,2", "disagrees")):
        with pytest.raises(UserError, match=message):
            layer_map(6, keep, given)


def test_pruned_student_starts_from_the_teachers_blocks_bit_identical(teacher):
    from transformers import AutoModel

    from adapters_kit.distill.student import merged_backbone, student_base
    from adapters_kit.runs.checkpoint import load_run

    run = load_run(teacher)
    merged = merged_backbone(run).state_dict()
    base = student_base(run, [1, 3])
    pruned = AutoModel.from_pretrained(str(base)).state_dict()
    renamed = {"encoder.layer.1.": "encoder.layer.0.", "encoder.layer.3.": "encoder.layer.1."}
    expected = {next((k.replace(a, b, 1) for a, b in renamed.items() if k.startswith(a)), k) for k in merged
                if not k.startswith(("encoder.layer.0.", "encoder.layer.2."))}
    assert set(pruned) == expected
    for new, old in ((0, 1), (1, 3)):
        for key, value in pruned.items():
            if key.startswith(f"encoder.layer.{new}."):
                assert torch.equal(value, merged[key.replace(f"layer.{new}.", f"layer.{old}.", 1)]), key
    for key in (k for k in pruned if not k.startswith("encoder.layer.")):
        assert torch.equal(pruned[key], merged[key]), key
    # the merge really holds the adapter: the merged backbone computes what the teacher's adapted one does
    ids = run.processor(["market shares profit"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(run.model.backbone(**ids).last_hidden_state,
                              merged_backbone(run)(**ids).last_hidden_state, atol=1e-5)
    assert student_base(run, [1, 3]) == base  # found again, not rebuilt


# ---------------------------------------------------------------------------------------------------- the teacher
def test_teacher_outputs_are_cached_per_teacher_and_data(teacher, student, data):
    from datasets import Dataset

    from adapters_kit.distill.teacher import teacher_outputs
    from adapters_kit.runs.checkpoint import load_run

    run = load_run(teacher)
    calls = []
    run.model.register_forward_hook(lambda *a: calls.append(1))
    texts = [t for t, _ in make_texts(5, seed=11)]
    first, hit = teacher_outputs(run, Dataset.from_dict({"input": texts, "label": ["x"] * len(texts)}))
    assert not hit and calls and torch.allclose(first, run.model(**run.processor(texts, return_tensors="pt",
                                                                                  padding=True)).detach(), atol=1e-5)
    n = len(calls)
    again, hit = teacher_outputs(run, Dataset.from_dict({"input": texts, "label": ["y"] * len(texts)}))
    assert hit and len(calls) == n and torch.equal(again, first)  # labels are not part of the key: never read
    _, hit = teacher_outputs(run, Dataset.from_dict({"input": texts[:-1]}))
    assert not hit and len(calls) > n
    other = load_run(student)  # another teacher (another model) on the same inputs
    _, hit = teacher_outputs(other, Dataset.from_dict({"input": texts}))
    assert not hit


# ----------------------------------------------------------------------------------------------- the student run
def test_student_is_an_ordinary_run_folder(teacher, student, capsys):
    from adapters_kit import load
    from adapters_kit.runs.checkpoint import load_run

    info = json.loads((student / "run_info.json").read_text())
    cfg = json.loads((student / "train_config.json").read_text())
    assert cfg["teacher"] == teacher and cfg["student_layers"] == 2 and cfg["method"] == "full"
    assert info["teacher"]["blocks_kept"] == [0, 3] and info["teacher"]["teacher_blocks"] == 4
    assert info["teacher"]["test"]["accuracy"] == json.loads((Path(teacher) / "metrics.json").read_text())["test"][
        "accuracy"]
    speed = info["teacher"]["speed"]
    assert speed["speedup"] == pytest.approx(speed["student_examples_per_second"] /
                                             speed["teacher_examples_per_second"])
    assert (student / "base" / "config.json").is_file()
    assert json.loads((student / "base" / "config.json").read_text())["num_hidden_layers"] == 2
    run = load_run(student)
    assert len(run.model.backbone.encoder.layer) == 2
    card = (student / "README.md").read_text()
    assert "## Distillation" in card and f"Distilled from the run `{teacher}`" in card
    assert "blocks 0, 3 of its 4" in card
    texts = [t for t, _ in make_texts(3, seed=5)]
    first = load(student).logits(texts)
    assert torch.allclose(load(student).logits(texts), first, atol=0)
    assert main(["compare", teacher, str(student), "--measure", "16"]) == 0
    table = capsys.readouterr().out
    assert "inference examples/s" in table and "(2 of 4 blocks)" in table and "run folder MB" in table


def test_student_reload_predicts_as_trained_and_exports_agree(teacher, data, tmp_path):
    from adapters_kit import AdapterTrainer, load, student_config
    from adapters_kit.share.export import export_run

    cfg = student_config(teacher, output=str(tmp_path / "s"), student_layers=3, epochs=1, lr=1e-3, batch_size=8)
    trainer = AdapterTrainer(cfg)
    trainer.train()
    assert json.loads((tmp_path / "s" / "run_info.json").read_text())["teacher"]["blocks_kept"] == [0, 2, 3]
    texts = [t for t, _ in make_texts(4, seed=7)]
    assert torch.allclose(trainer.classifier().logits(texts), load(tmp_path / "s").logits(texts), atol=1e-6)
    report = export_run(tmp_path / "s", "onnx", tmp_path / "onnx", data=f"train={data['train']},test={data['test']}",
                        max_samples=16)
    agree = next(line for line in report["checks"] if "same prediction" in line)
    assert "same prediction for 100.0%" in agree, report["checks"]


def test_teacher_labelled_inputs_are_used_and_their_labels_never_read(teacher, data, tmp_path):
    from safetensors.torch import load_file

    rows = list(csv.reader(open(data["unlabelled"])))[1:]
    shuffled = [r[1] for r in rows]
    random.Random(0).shuffle(shuffled)
    other = write_csv(tmp_path / "shuffled.csv", [(r[0], s) for r, s in zip(rows, shuffled)])
    assert shuffled != [r[1] for r in rows]
    weights = []
    for i, spec in enumerate((data["unlabelled"], other)):
        out = tmp_path / f"s{i}"
        argv = ["distill", teacher, "--output", str(out), "--unlabeled-data", spec, "--epochs", "1",
                "--lr", "1e-3", "--batch-size", "8"]
        assert main(argv) == 0
        weights.append(load_file(str(out / "backbone_trainable.safetensors")))
        info = json.loads((out / "run_info.json").read_text())["teacher"]
        assert info["teacher_labelled_examples"] == len(rows) and info["labelled_examples"] > 0
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    samples = json.loads((tmp_path / "s0" / "metrics.json").read_text())["train"]["train_samples"]
    assert samples == info["labelled_examples"] + len(rows)  # one epoch over both kinds of example


# ------------------------------------------------------------------------------------------------------ refusals
def test_bad_distillation_requests_are_one_line_errors(teacher, data, tmp_path, capsys):
    from tests.modality_fixtures import build_family

    out = tmp_path / "out"
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    cases = [
        (["distill", str(not_a_run), "--output", str(out)], "is not a run folder"),
        (["distill", teacher, "--output", str(out), "--student-layers", "5"], "--student-layers must be in 1..4"),
        (["distill", teacher, "--output", str(out), "--student-layers", "0"], "student_layers must be a positive"),
        (["distill", teacher, "--output", str(out), "--method", "probe"], "--method must be one of"),
        (["distill", teacher, "--output", str(out), "--temperature", "0"], "temperature must be > 0"),
        (["distill", teacher, "--output", str(out), "--student", build_family("vit", str(tmp_path / "vit"))],
         "takes image but teacher"),
        (["distill", teacher, "--output", teacher, "--overwrite"], "holds this command's input"),
        (["distill", teacher, "--output", str(out), "--student", str(tmp_path / "vit"), "--student-layers", "2"],
         "both choose the student"),
    ]
    for argv, message in cases:
        assert_one_line_error(main, argv, message, capsys, tmp_path, teacher)
    assert not out.exists()


def test_a_token_classification_teacher_is_refused(tiny_model_dir, tmp_path, capsys):
    rng = random.Random(0)
    rows = []
    for _ in range(40):
        topic = rng.choice(sorted(TOPICS))
        words = rng.choices(FILLER, k=rng.randint(1, 4)) + [rng.choice(TOPICS[topic])]
        rows.append({"tokens": words, "ner_tags": ["O"] * (len(words) - 1) + [f"B-{topic.upper()}"]})
    path = tmp_path / "tags.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "tagger"
    assert main(["train", "--model", tiny_model_dir, "--data", str(path), "--output", str(run), "--method", "probe",
                 "--epochs", "1"]) == 0
    assert_one_line_error(main, ["distill", str(run), "--output", str(tmp_path / "s"), "--student", tiny_model_dir],
                          "which scores every token", capsys, tmp_path / "tagger")
    assert not (tmp_path / "s").exists()


def test_a_regression_teacher_teaches_on_its_own_scale(tiny_model_dir, tmp_path):
    rng = random.Random(4)
    rows = []
    for _ in range(80):
        words = rng.choices(TOPICS["sport"], k=rng.randint(1, 6)) + rng.choices(FILLER, k=3)
        rows.append((" ".join(words), 10.0 + 7.5 * sum(w in TOPICS["sport"] for w in words) + rng.random()))
    data = write_csv(tmp_path / "scores.csv", rows, header=("text", "score"))
    assert main(["train", "--model", tiny_model_dir, "--data", data, "--output", str(tmp_path / "t"), "--method",
                 "full", "--epochs", "3", "--lr", "3e-3", "--batch-size", "8", "--task", "regression"]) == 0
    assert main(["distill", str(tmp_path / "t"), "--output", str(tmp_path / "s"), "--student", tiny_model_dir,
                 "--epochs", "2", "--lr", "3e-3", "--batch-size", "8"]) == 0
    labels = json.loads((tmp_path / "s" / "labels.json").read_text())
    assert labels == json.loads((tmp_path / "t" / "labels.json").read_text())  # the teacher's scale, not refitted
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert TrainConfig(**json.loads((tmp_path / "s" / "train_config.json").read_text())).task == "regression"
    assert metrics["validation"]["pearson"] > 0.95  # the student ranks the scores as the teacher taught


def test_a_student_of_another_family_learns_from_the_teachers_own_reading(teacher, tmp_path):
    """A RoBERTa-style student with its own word-level tokenizer: the teacher's targets were computed with the
    teacher's WordPiece tokenizer, one row per example, so any tokenizer can learn from them."""
    from adapters_kit import load
    from tests.modality_fixtures import build_family

    folder = build_family("roberta", str(tmp_path / "roberta"))
    out = tmp_path / "s"
    assert main(["distill", teacher, "--output", str(out), "--student", folder, "--epochs", "1", "--lr", "1e-3",
                 "--batch-size", "8"]) == 0
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["model"] == folder and cfg["student_layers"] is None and not (out / "base").exists()
    assert json.loads((out / "labels.json").read_text()) == json.loads((Path(teacher) / "labels.json").read_text())
    assert load(out).model.backbone.config.model_type == "roberta"


def test_an_image_teacher_teaches_a_pruned_image_student(tmp_path):
    from adapters_kit import load
    from tests.modality_fixtures import build_family, write_image_folder

    model = build_family("vit", str(tmp_path / "vit"))
    data = write_image_folder(str(tmp_path / "images"), {"train": 12, "test": 4})
    assert main(["train", "--model", model, "--data", data, "--output", str(tmp_path / "t"), "--method", "lora",
                 "--epochs", "1", "--batch-size", "8"]) == 0
    assert main(["distill", str(tmp_path / "t"), "--output", str(tmp_path / "s"), "--epochs", "1",
                 "--batch-size", "8"]) == 0
    info = json.loads((tmp_path / "s" / "run_info.json").read_text())
    assert info["modality"] == "image" and info["teacher"]["blocks_kept"] == [0]
    from adapters_kit.distill.student import blocks_of

    clf = load(tmp_path / "s")
    assert len(blocks_of(clf.model.backbone)[1]) == 1 and clf.model.backbone.config.num_hidden_layers == 1
    assert len(clf([str(next((tmp_path / "images" / "test" / "red").iterdir()))])) == 1


def test_a_pushed_student_carries_its_base_and_loads_from_the_hub(student, tmp_path):
    """The student's pruned base goes up with it (``base/``), and the copy pulled back predicts as the local run;
    a student folder without its base refuses to load instead of filling the whole model with its blocks."""
    import shutil

    from adapters_kit import UserError, load
    from adapters_kit.share.hub import files_to_push
    from tests.test_hub import push_and_load

    assert {"base/config.json", "base/model.safetensors", "base/tokenizer.json"} <= set(files_to_push(student))
    texts = [t for t, _ in make_texts(2, seed=9)]
    _, result, store = push_and_load(student, texts, tmp_path / "hf_home")
    repo = store.repos["user/name"]
    assert "base/model.safetensors" in repo["commits"][repo["branches"]["main"]]
    assert Path(result["folder"], "base", "config.json").is_file()
    torch.testing.assert_close(torch.tensor(result["logits"]), load(student).logits(texts), atol=1e-6, rtol=0)
    broken = tmp_path / "no-base"
    shutil.copytree(student, broken)
    shutil.rmtree(broken / "base")
    with pytest.raises(UserError, match="base checkpoint \\(base/\\) is missing"):
        load(broken)


def test_a_multilabel_teacher_teaches_soft_label_scores(tiny_model_dir, tmp_path):
    rng = random.Random(6)
    rows = []
    for _ in range(90):
        topics = rng.sample(sorted(TOPICS), k=rng.randint(1, 2))
        words = [w for t in topics for w in rng.choices(TOPICS[t], k=3)] + rng.choices(FILLER, k=2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": topics})
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["train", "--model", tiny_model_dir, "--data", str(data), "--output", str(tmp_path / "t"),
                 "--method", "full", "--epochs", "3", "--lr", "3e-3", "--batch-size", "8"]) == 0
    assert main(["distill", str(tmp_path / "t"), "--output", str(tmp_path / "s"), "--student", tiny_model_dir,
                 "--epochs", "3", "--lr", "3e-3", "--batch-size", "8"]) == 0
    cfg = json.loads((tmp_path / "s" / "train_config.json").read_text())
    teacher = json.loads((tmp_path / "t" / "metrics.json").read_text())["validation"]
    student = json.loads((tmp_path / "s" / "metrics.json").read_text())["validation"]
    assert cfg["task"] == "multi-label" and cfg["best_metric"] == "f1_micro"
    assert student["f1_micro"] >= teacher["f1_micro"] - 0.1, (student["f1_micro"], teacher["f1_micro"])
