"""Methods are registered recipes: one spelling of each name, the trainer asks the recipe, and every stage runs
through the training loop (checkpoints and --resume included)."""

import ast
import importlib
import os
import signal
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapters_kit import AdapterTrainer, TrainConfig, UserError
from adapters_kit._moved import MOVED
from adapters_kit.methods import METHODS, get_recipe, validate
from adapters_kit.methods.adapters import ADAPTERS, build_adapter
from tests.conftest import write_csv

PKG = Path(__file__).parents[1] / "adapters_kit"
TEXTS = ["team goal match win the", "bank shares profit market", "phone chip data software the report", "goal"]


def _registration(name: str) -> str:
    """The module that registers ``name``: the adapter strategies' module, or the recipe's own."""
    factory = METHODS.get(name)
    if name in ADAPTERS:
        return "adapters_kit.methods.adapters"
    return factory.__module__


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            # a string expression statement is documentation: a module/class/function docstring or an attribute's
            ids |= {id(s.value) for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)}
    return ids


def _config_defaults(tree: ast.AST) -> set[int]:
    """TrainConfig's field defaults (``method: str = "lora"``): the documented default value of a setting."""
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    return {id(s.value) for s in cls.body if isinstance(s, ast.AnnAssign) and s.value is not None}


def test_a_method_name_is_spelled_only_where_it_is_registered():
    names = set(METHODS.names())
    found = []
    for path in sorted(PKG.rglob("*.py")):
        module = "adapters_kit." + ".".join(path.relative_to(PKG).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree) | (_config_defaults(tree) if module == "adapters_kit.config" else set())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in names and id(node) not in skip
                    and _registration(node.value) != module):
                found.append(f"{path.relative_to(PKG)}:{node.lineno} {node.value!r}")
    assert not found, "method names outside their registration: " + ", ".join(found)


def test_every_method_has_a_recipe_with_a_main_stage_last():
    for name in METHODS.names():
        recipe = get_recipe(name)
        cfg = TrainConfig(method=name, target_data="t.csv", source_data="s.csv")
        stages = recipe.stages(cfg)
        assert stages[-1].name == "main" and all(s.name != "main" for s in stages[:-1]), name
        assert all(s.key.endswith("_stage") for s in stages[:-1]), name
        assert recipe.describe(cfg), name
        assert set(recipe.card_knobs(cfg)) <= set(TrainConfig().to_dict()), name


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(UserError, match="unknown method 'nope'; choose one of: autoencoder-pretrain, contrastive, "
                                        "dann"):
        get_recipe("nope")
    with pytest.raises(UserError, match="unknown adapter 'nope'; choose one of: dora, full"):
        build_adapter("nope")
    with pytest.raises(UserError, match=r"--adapter lp-ft cannot be trained by dann: the backbone must be able to "
                                        r"adapt \(use dora, full, ia3, loha, lokr, lora, unfreeze-top-k\)"):
        validate(TrainConfig(method="dann", target_data="t.csv", adapter="lp-ft"))
    with pytest.raises(UserError, match="lp_ft_stage must be an adapter that trains the backbone"):
        validate(TrainConfig(method="lp-ft", lp_ft_stage="probe"))


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_still_import_with_a_deprecation_warning(old):
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)  # a first import, as in a fresh process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imported = importlib.import_module(old)
    assert imported is new
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == [
        f"{old} moved to {MOVED[old]}; import it from there (the old path is removed in 0.3.0)"]


def test_the_data_and_evaluation_packages_still_export_what_their_modules_did():
    from adapters_kit.data import LabelMap, load_splits, make_loader, prepare, splits
    from adapters_kit.evaluation import evaluate, evaluator

    assert (LabelMap, load_splits, make_loader, prepare) == (splits.LabelMap, splits.load_splits, splits.make_loader,
                                                             splits.prepare)
    assert evaluate is evaluator.evaluate
    with pytest.raises(AttributeError, match="module 'adapters_kit.data' has no attribute 'nothing'"):
        importlib.import_module("adapters_kit.data").nothing


def _ae_cfg(tiny_cfg, tmp_path, out, **kw):
    unlabelled = write_csv(tmp_path / "unlabelled.csv", [(t,) for t in TEXTS * 5], header=("text",))
    return tiny_cfg(method="autoencoder-pretrain", pretrain_data=unlabelled, pretrain_epochs=2, lora_dropout=0.0,
                    epochs=1, output=str(tmp_path / out), **kw)


def _interrupt_at(monkeypatch, cls, call: int):
    original, calls = cls.loss, []

    def loss(self, *args):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signal.SIGINT)  # the loop only flags it; the step finishes, then it saves
        return original(self, *args)

    monkeypatch.setattr(cls, "loss", loss)
    return original


def _same_weights(a: Path, b: Path) -> None:
    for f in ("adapter_model.safetensors", "head.safetensors"):
        wa, wb = load_file(str(a / f)), load_file(str(b / f))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f


@pytest.mark.parametrize("where", ["pretrain", "main"])
def test_autoencoder_pretraining_checkpoints_and_resumes_through_the_loop(where, tiny_cfg, tmp_path, monkeypatch):
    """Ctrl-C in the reconstruction stage leaves checkpoint-pretrain-N and --resume continues that stage; Ctrl-C
    in the supervised stage resumes it without pretraining again. Either way the run ends with exactly the weights
    and the stage figures of an uninterrupted one."""
    from adapters_kit.errors import TrainingInterrupted
    from adapters_kit.methods.autoencoder import Reconstruction
    from adapters_kit.train.objectives import TaskLoss

    whole = AdapterTrainer(_ae_cfg(tiny_cfg, tmp_path, "whole")).train()
    # 20 unlabelled texts in batches of 8: 3 reconstruction steps per epoch; the supervised stage follows.
    cls, call = (Reconstruction, 4) if where == "pretrain" else (TaskLoss, 2)
    original = _interrupt_at(monkeypatch, cls, call)
    with pytest.raises(TrainingInterrupted):
        AdapterTrainer(_ae_cfg(tiny_cfg, tmp_path, "cut")).train()
    monkeypatch.setattr(cls, "loss", original)
    checkpoints = sorted(p.name for p in (tmp_path / "cut").iterdir() if p.name.startswith("checkpoint-"))
    if where == "pretrain":
        assert checkpoints == ["checkpoint-pretrain-3", "checkpoint-pretrain-4"]
    else:  # the main stage's first checkpoint made the reconstruction stage's obsolete
        assert checkpoints == ["checkpoint-2"]
    reconstruct, calls = Reconstruction.loss, []
    monkeypatch.setattr(Reconstruction, "loss", lambda self, *a: calls.append(1) or reconstruct(self, *a))
    resumed = AdapterTrainer(_ae_cfg(tiny_cfg, tmp_path, "cut", resume=True)).train()
    assert len(calls) == (6 - 4 if where == "pretrain" else 0)  # the steps left, or none: it is not run again
    _same_weights(tmp_path / "whole", tmp_path / "cut")
    stage, again = whole["train"]["pretrain_stage"], resumed["train"]["pretrain_stage"]
    assert again["reconstruction_loss"] == pytest.approx(stage["reconstruction_loss"], abs=1e-6)
    assert again["examples"] == stage["examples"] == 20
