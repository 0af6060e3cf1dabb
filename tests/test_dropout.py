"""adapters_kit.model.dropout: the same dropout as torch's, from cheaper random numbers, checked against plain
autograd."""

import math

import pytest
import torch
from torch import nn

from adapters_kit.model.dropout import ATTENTION, FastDropout, attention_with_dropout, fast_dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drops_each_element_with_probability_p(p):
    n = 2_000_001  # odd: the last 64-bit draw is half used
    torch.manual_seed(0)
    keep = keep_mask((n,), p)
    assert keep.dtype == torch.bool and keep.shape == (n,)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs((~keep).float().mean().item() - p) < 5 * sigma
    # the two 32-bit halves of each 64-bit draw are independent: both dropped with probability p ** 2
    pairs = n // 2
    both = ((~keep[0:2 * pairs:2]) & (~keep[1:2 * pairs:2])).float().mean().item()
    assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / pairs)
    torch.manual_seed(0)
    assert torch.equal(keep_mask((n,), p), keep)  # the default generator governs it


def test_fast_dropout_is_dropout_with_the_drawn_mask():
    x, g = torch.randn(4, 7, 9, requires_grad=True), torch.randn(4, 7, 9)
    layer = FastDropout(0.2).train()
    torch.manual_seed(3)
    y = layer(x)
    y.backward(g)
    torch.manual_seed(3)
    keep = keep_mask(x.shape, 0.2).float()
    assert torch.allclose(y, x.detach() * keep / 0.8, atol=1e-6)
    assert torch.allclose(x.grad, g * keep / 0.8, atol=1e-6)
    assert torch.equal(layer.eval()(x), x)


def _reference(q, k, v, mask, keep, p, scale):
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool else scores + mask
    return (torch.softmax(scores, -1) * keep / (1 - p)) @ v


@pytest.mark.parametrize("kind", ["none", "bool", "additive", "causal"])
def test_attention_with_dropout_matches_autograd_of_the_formula(kind):
    torch.manual_seed(0)
    b, h, lq, lk, d, p = 2, 3, 5, 6, 4, 0.25
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for n in (lq, lk, lk))
    mask = {"none": None,
            "bool": torch.rand(b, 1, lq, lk) > 0.3,
            "additive": torch.randn(b, 1, lq, lk, dtype=torch.float64),
            "causal": torch.ones(lq, lk, dtype=torch.bool).tril()}[kind]
    keep = keep_mask((b, h, lq, lk), p)
    g = torch.randn(b, h, lq, d, dtype=torch.float64)
    out = attention_with_dropout(q, k, v, mask, p, 0.5, keep)
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref = _reference(q, k, v, mask, keep, p, 0.5)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    assert torch.allclose(out, ref, atol=1e-12)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, atol=1e-12)
    small = tuple(t.detach()[:1, :1].requires_grad_() for t in (q, k, v))
    m = mask[:1] if mask is not None and mask.ndim == 4 else mask
    assert torch.autograd.gradcheck(lambda a, b_, c: attention_with_dropout(a, b_, c, m, p, 0.5, keep[:1, :1]),
                                    small)


@pytest.mark.parametrize("needs", ["q", "k", "v", "qv", "kv"])
def test_attention_backward_computes_only_the_gradients_asked_for(needs):
    # a first block's keys have no adapter below them: its backward needs dq and dv, never dk
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=name in needs) for name in "qkv")
    keep = keep_mask((2, 3, 5, 5), 0.25)
    wanted = [t for t in (q, k, v) if t.requires_grad]
    g = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    got = torch.autograd.grad(attention_with_dropout(q, k, v, None, 0.25, 0.5, keep), wanted, g)
    want = torch.autograd.grad(_reference(q, k, v, None, keep, 0.25, 0.5), wanted, g)
    assert len(got) == len(needs)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)


def _bert(attention_dropout: float, hidden_dropout: float, attention: str = "sdpa"):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, attention_probs_dropout_prob=attention_dropout,
                                hidden_dropout_prob=hidden_dropout, attn_implementation=attention),
                     add_pooling_layer=False)


def _batch():
    ids = torch.randint(5, 50, (3, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:], mask[2, 3:] = 0, 0
    return ids, mask


def test_fast_dropout_switches_the_model_and_restores_it():
    model = _bert(0.1, 0.1)
    ids, mask = _batch()
    before = model.eval()(input_ids=ids, attention_mask=mask).last_hidden_state
    kinds = {n: type(m) for n, m in model.named_modules()}
    with fast_dropout(model):
        assert model.config._attn_implementation == ATTENTION
        assert all(type(m) is not nn.Dropout for m in model.modules())
        # embeddings; per block: attention probabilities, attention output, feed-forward output
        assert sum(isinstance(m, FastDropout) for m in model.modules()) == 7
        inside = model(input_ids=ids, attention_mask=mask).last_hidden_state  # eval: nothing drops
    assert torch.allclose(inside, before, atol=1e-6)
    assert model.config._attn_implementation == "sdpa"
    assert {n: type(m) for n, m in model.named_modules()} == kinds


def test_training_attention_honours_the_padding_mask():
    """Only attention dropout on: real tokens' states do not depend on what sits in padded positions."""
    model = _bert(0.3, 0.0).train()
    ids, mask = _batch()
    other = ids.clone()
    other[mask == 0] = 7
    with fast_dropout(model):
        torch.manual_seed(1)
        a = model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.manual_seed(1)
        b = model(input_ids=other, attention_mask=mask).last_hidden_state
        torch.manual_seed(1)
        c = model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.manual_seed(2)
        d = model(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(a[real], b[real], atol=1e-6)
    assert torch.equal(a, c)  # seeded: reproducible
    assert not torch.allclose(a[real], d[real], atol=1e-3)  # and it does drop: another seed, other outputs


def test_training_without_dropout_equals_torchs_path():
    """With every dropout at 0 the switched model computes exactly what the original does, gradients included."""
    model = _bert(0.0, 0.0).train()
    ids, mask = _batch()
    ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    ref_grad = torch.autograd.grad(ref.sum(), model.embeddings.word_embeddings.weight)[0]
    with fast_dropout(model):
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        grad = torch.autograd.grad(out.sum(), model.embeddings.word_embeddings.weight)[0]
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(grad, ref_grad, atol=1e-5)


class _Recording:
    """Cross-entropy on a BERT's first token, noting what the model looks like at each step."""

    stream = None

    def __init__(self):
        self.seen = []

    def aux_heads(self, dim):
        return {}

    def loss(self, model, batch, labels, progress):
        kinds = {type(m) for m in model.modules() if isinstance(m, nn.Dropout)}
        self.seen.append((kinds, model.backbone.config._attn_implementation))
        states = model.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return nn.functional.cross_entropy(model.head(states.last_hidden_state[:, 0]), labels)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_training_loop_trains_with_fast_dropout_and_hands_back_the_model(enabled):
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from adapters_kit.config import TrainConfig
    from adapters_kit.train.loop import train

    model = nn.Module()
    model.backbone, model.head = _bert(0.1, 0.1), nn.Sequential(nn.Dropout(0.1), nn.Linear(32, 2))
    ids, mask = _batch()
    rows = [{"input_ids": i, "attention_mask": m, "labels": torch.tensor(n % 2)} for n, (i, m) in
            enumerate(zip(ids, mask))]
    objective = _Recording()
    cfg = TrainConfig(model="m", data="d", output="o", epochs=1, lr=1e-3, fast_dropout=enabled)
    train(cfg, model, DataLoader(rows, batch_size=2), {}, Accelerator(cpu=True), ["a", "b"], objective=objective)
    assert len(objective.seen) == 2
    want = ({FastDropout}, ATTENTION) if enabled else ({nn.Dropout}, "sdpa")
    assert all(seen == want for seen in objective.seen)
    assert {type(m) for m in model.modules() if isinstance(m, nn.Dropout)} == {nn.Dropout}
    assert model.backbone.config._attn_implementation == "sdpa"


def test_a_model_on_eager_attention_keeps_it_and_trains_with_the_cheaper_masks():
    model = _bert(0.1, 0.1, attention="eager").train()
    ids, mask = _batch()
    with fast_dropout(model):
        assert model.config._attn_implementation == "eager"
        assert sum(isinstance(m, FastDropout) for m in model.modules()) == 7
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out.sum().backward()
        model.eval()
        evaluated = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out).all() and model.embeddings.word_embeddings.weight.grad is not None
    assert torch.allclose(model(input_ids=ids, attention_mask=mask).last_hidden_state, evaluated, atol=1e-6)


def test_fast_dropout_is_opt_in_and_off_on_versions_it_was_not_built_for(caplog):
    """Off unless asked for; asked for on a transformers or torch major version it was not written against, it
    leaves the model untouched and says so once."""
    import adapters_kit.model.dropout as dropout
    from adapters_kit import TrainConfig

    assert TrainConfig().fast_dropout is False
    assert dropout.supported()  # the installed versions
    with caplog.at_level("WARNING"):
        assert not dropout.supported({"transformers": "6.0.0", "torch": "2.13.0"})
    assert "fast_dropout is off" in caplog.text and "transformers 6.0.0" in caplog.text
