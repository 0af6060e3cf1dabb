"""--probe-solver lbfgs: the head is scikit-learn's logistic regression, solved once on cached features."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from adapters_kit import AdapterTrainer, TrainConfig, load
from adapters_kit.errors import UserError
from adapters_kit.methods import validate
from adapters_kit.methods.solvers import fit_logistic


def test_fit_matches_scikit_learn_logistic_regression():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 16))
    y = rng.integers(0, 4, 300)
    x = centres[y] + rng.normal(0, 1.5, (300, 16))
    linear = torch.nn.Linear(16, 4)
    fit_logistic(linear, torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, tol=1e-10)).fit(x, y)
    with torch.no_grad():
        ours = torch.softmax(linear(torch.tensor(x, dtype=torch.float32)), -1).numpy()
    assert np.abs(ours - ref.predict_proba(x)).max() < 1e-3
    # scikit-learn's multinomial coefficients are defined up to a shift shared by all classes
    w = linear.weight.detach().numpy() * x.std(0)  # back to the standardised features' scale
    coef = ref[-1].coef_
    assert np.abs((w - w.mean(0)) - (coef - coef.mean(0))).max() < 1e-2


def test_lbfgs_probe_trains_saves_and_reloads(tiny_cfg, tmp_path):
    cfg = tiny_cfg(method="probe", probe_solver="lbfgs", output=str(tmp_path / "run"))
    trainer = AdapterTrainer(cfg)
    metrics = trainer.train()
    steps = metrics["train"]["best_step"]
    assert metrics["train"]["best_epoch"] == 1 and steps > 0
    history = json.loads((tmp_path / "run" / "run_info.json").read_text())["history"]
    assert [(h["split"], h["global_step"]) for h in history] == [("validation", steps)]
    assert history[0]["accuracy"] == metrics["validation"]["accuracy"]
    texts = ["match goal team", "market shares profit", "software data chip"]
    assert torch.allclose(load(cfg.output).logits(texts), trainer.classifier().logits(texts), atol=1e-5)


@pytest.mark.parametrize("changes", [{"method": "lora"}, {"method": "probe", "head": "mlp"},
                                     {"method": "probe", "cache_features": False}])
def test_lbfgs_needs_a_linear_probe_on_cached_features(changes):
    with pytest.raises(UserError, match="--probe-solver lbfgs fits a linear head on cached features"):
        validate(TrainConfig(probe_solver="lbfgs", **changes))
