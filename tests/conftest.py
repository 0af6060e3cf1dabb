"""Shared fixtures: a tiny random BERT with its own word-level vocabulary, and small synthetic text data.

The tiny model is built from a config (no download), saved as a normal checkpoint folder, so every test goes
through the real ``from_pretrained`` paths.
"""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _feature_cache(tmp_path_factory):
    """Tests share one fresh feature cache, never the user's."""
    os.environ["ADAPTERS_KIT_CACHE"] = str(tmp_path_factory.mktemp("adapters_kit_cache"))

TOPICS = {
    "sport": "match goal team player coach league score win season stadium".split(),
    "business": "market shares profit bank economy company price trade investor growth".split(),
    "tech": "software computer phone internet chip data network device users apps".split(),
}
FILLER = "the a of and in on with for to today new report says".split()


def make_texts(n_per_class: int, seed: int) -> list[tuple[str, str]]:
    """Sentences of topic words mixed with filler; the label is the topic. Includes exact duplicates."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            toks = rng.choices(words, k=rng.randint(4, 9)) + rng.choices(FILLER, k=rng.randint(2, 6))
            rng.shuffle(toks)
            rows.append((" ".join(toks), label))
    rows += rows[:3]  # exact duplicates, as real corpora have
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
        {w for ws in TOPICS.values() for w in ws} | set(FILLER))
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores ``vocab_file=`` here (the tokenizer would know only its special tokens): pass the words
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(str(d))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(str(d))
    return str(d)


def write_csv(path, rows, header=("text", "label")) -> str:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def text_files(tmp_path) -> dict[str, str]:
    """train.csv (with duplicates) and test.csv (sharing two texts with train) with string labels."""
    train = make_texts(30, seed=1)
    test = make_texts(8, seed=2)[:20] + train[:2]
    return {"train": write_csv(tmp_path / "train.csv", train), "test": write_csv(tmp_path / "test.csv", test)}


@pytest.fixture
def tiny_cfg(tiny_model_dir, text_files, tmp_path):
    from adapters_kit import TrainConfig

    def make(**kw):
        base = dict(model=tiny_model_dir, data=f"train={text_files['train']},test={text_files['test']}",
                    output=str(tmp_path / "run"), epochs=2, batch_size=8, max_length=32, lr=5e-3)
        return TrainConfig(**{**base, **kw})

    return make
