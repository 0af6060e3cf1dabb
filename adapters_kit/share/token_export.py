"""A token-classification run as a stock transformers checkpoint: the merged backbone and the linear head in the
backbone family's own ``*ForTokenClassification`` class (``BertForTokenClassification`` ...), which scores every
token state with one linear layer exactly as the run does. It loads with ``AutoModelForTokenClassification`` and
``pipeline("token-classification")`` without remote code or adapters_kit."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from adapters_kit.errors import UserError
from adapters_kit.model.modeling import AdapterClassifier
from adapters_kit.runs.atomic import write_json
from adapters_kit.runs.checkpoint import LoadedRun


def _head_linear(stock: nn.Module, num_labels: int) -> nn.Linear:
    """The stock class's scoring layer (``classifier`` in BERT-like families, ``score`` in decoder LMs)."""
    for name in ("classifier", "score"):
        layer = getattr(stock, name, None)
        if isinstance(layer, nn.Linear) and layer.out_features == num_labels:
            return layer
    raise UserError(f"{type(stock).__name__} has no linear scoring layer this export can fill; use load() for this "
                    f"run")


def stock_token_model(run: LoadedRun, model: AdapterClassifier) -> nn.Module:
    """The run's merged backbone and linear head inside ``AutoModelForTokenClassification``'s class for the
    backbone's config (in eval mode)."""
    from transformers import AutoModelForTokenClassification

    if run.cfg.head != "linear":
        raise UserError(f"a merged token-classification export holds one linear layer per token, as transformers' "
                        f"classes do; this run's head is {run.cfg.head!r}: train with --head linear, or use load()")
    config = copy.deepcopy(model.backbone.config)
    config.id2label = dict(enumerate(run.labels.names))
    config.label2id = {n: i for i, n in enumerate(run.labels.names)}
    config.architectures = None
    try:
        stock = AutoModelForTokenClassification.from_config(config)
    except ValueError as e:
        raise UserError(f"transformers has no token-classification class for {config.model_type} "
                        f"({str(e).splitlines()[0][:120]}); use load() for this run") from None
    base = getattr(stock, stock.base_model_prefix)
    # A backbone saved on its own may carry a pooler the token class does not have; nothing may be missing.
    missing = base.load_state_dict(model.backbone.state_dict(), strict=False).missing_keys
    if missing:
        raise UserError(f"the backbone's weights do not fill {type(stock).__name__} ({missing[0]} ...); use load()")
    with torch.no_grad():
        linear = _head_linear(stock, len(run.labels))
        linear.weight.copy_(model.head[-1].weight)
        linear.bias.copy_(model.head[-1].bias)
    return stock.eval()


def save_token_merged(run: LoadedRun, model: AdapterClassifier, out: Path) -> None:
    """config.json + model.safetensors of the stock class, the tokenizer, and ``labels.json`` (with the tagging
    scheme)."""
    stock_token_model(run, model).save_pretrained(str(out))
    run.processor.save_pretrained(str(out))
    write_json(out / "labels.json", {"id2label": {str(i): n for i, n in enumerate(run.labels.names)},
                                     "label2id": run.labels.label2id, "params": run.labels.params})


def load_token_merged(directory: str | Path) -> nn.Module:
    """The exported checkpoint as a user without adapters_kit loads it."""
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(str(directory)).eval()
