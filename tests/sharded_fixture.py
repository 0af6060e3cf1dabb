"""The model, batch and step shared by the sharded-save script and its unsharded reference."""

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertModel

from adapters_kit import TrainConfig
from adapters_kit.data.splits import LabelMap
from adapters_kit.model.modeling import build_model

CFG = TrainConfig(method="lora", pooling="mean", lora_r=2, lora_dropout=0.0, head_dropout=0.0, lr=1e-2, seed=7)
LABELS = LabelMap(("sport", "business", "tech"))
STEPS = 3
TEXTS = ["team goal match win", "bank shares profit", "phone chip data", "league score coach",
         "market trade price", "network device users", "stadium season player", "investor growth economy"]


def build(model_dir: str):
    torch.manual_seed(CFG.seed)
    model = build_model(CFG, BertModel.from_pretrained(model_dir), len(LABELS.names))
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)  # eval: no dropout, so shards and whole agree


def batch(tok) -> tuple[dict, torch.Tensor]:
    inputs = dict(tok(TEXTS, padding="max_length", max_length=8, truncation=True, return_tensors="pt"))
    return inputs, torch.tensor([i % 3 for i in range(len(TEXTS))])


def step(model, optimizer, inputs, labels) -> None:
    F.cross_entropy(model(**inputs), labels).backward()
    optimizer.step()
    optimizer.zero_grad()
