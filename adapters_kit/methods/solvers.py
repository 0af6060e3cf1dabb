"""Closed-form-ish probe: multinomial logistic regression on cached features, solved with L-BFGS in one go.

The objective is scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C=1))``: features are
standardised with the training set's mean and standard deviation, then the summed cross-entropy plus half the
squared norm of the weights (the bias is not penalised), i.e. mean cross-entropy + ||W||^2 / (2 n), is minimised.
Standardising makes L-BFGS converge in far fewer iterations; the scaling is folded back into the linear layer, so
the head still reads the raw pooled features.
"""

from __future__ import annotations

import torch
from torch import nn


def fit_logistic(linear: nn.Linear, features: torch.Tensor, labels: torch.Tensor, c: float = 1.0,
                 max_iter: int = 500, tolerance: float = 1e-5) -> int:
    """Fit ``linear`` (in place, from zero) to ``features`` -> ``labels``; returns the L-BFGS iterations used."""
    raw, y = features.float().clone(), labels.long().clone()  # cached features may be inference-mode tensors
    mean, std = raw.mean(0), raw.std(0, unbiased=False).clamp(min=1e-6)
    x = (raw - mean) / std
    n = x.shape[0]
    weight = torch.zeros_like(linear.weight, dtype=torch.float32, requires_grad=True)
    bias = torch.zeros_like(linear.bias, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(x @ weight.T + bias, y) + weight.pow(2).sum() / (2 * c * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():  # W z + b with z = (x - mean) / std  ==  (W / std) x + (b - (W / std) mean)
        folded = weight / std
        linear.weight.copy_(folded)
        linear.bias.copy_(bias - folded @ mean)
    return int(opt.state[opt._params[0]].get("n_iter", 0))
