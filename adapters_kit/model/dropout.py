"""Cheaper dropout for training on CPU: the same dropout (each element zeroed with probability p, survivors scaled
by 1 / (1 - p)), from cheaper random numbers and with a smaller attention backward.

On CPU, PyTorch draws a dropout mask with ``bernoulli_``, one call of its serial generator per element: about a
fifth of a LoRA training step of a BERT-sized model at 128 tokens with the backbone's own dropouts. Here each
64-bit draw of the same generator (``torch.manual_seed`` still governs it) gives two 32-bit integers, and an
element is dropped when its integer falls below p * 2**32, so p is honoured to 2**-32. With dropout on attention
probabilities, PyTorch's CPU ``scaled_dot_product_attention`` leaves its fused kernel for a composite one that
keeps the softmax output and its dropped copy for the backward pass; :class:`_AttentionDropout` keeps the softmax
output and a one-byte mask and recomputes the dropped copy.

:func:`fast_dropout` switches a model to both while it trains and restores it afterwards, so nothing saved or
exported refers to this module. Tensors on other devices, half precision and autocast keep PyTorch's own paths.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

log = logging.getLogger(__name__)
BUILT_FOR = {"transformers": (5,), "torch": (2,)}
"""Major versions this module's stand-ins were written and tested against (transformers' attention and mask
registries, torch's CPU sdpa); on others :func:`fast_dropout` leaves the model as it is."""

_INT32_MIN = -(2 ** 31)
ATTENTION = "adapters_kit_dropout_sdpa"
"""The attention implementation registered with transformers; it stands in for ``sdpa``. (A model on ``eager``
keeps it: each model family has its own eager function, which a registered one cannot hand calls back to.)"""


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A CPU bool tensor of ``shape``: True (keep) with probability 1 - p, each element independently, drawn from
    torch's default generator."""
    n = math.prod(shape)
    bits = torch.randint(-(2 ** 63), 2 ** 63 - 1, ((n + 1) // 2,), dtype=torch.int64).view(torch.int32)[:n]
    return bits.view(shape) >= _INT32_MIN + round(p * 2 ** 32)


def _fast(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled("cpu")


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0).mul_(ctx.scale), None, None


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose training-mode mask comes from :func:`keep_mask` (on CPU, in fp32/fp64)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or not _fast(x):
            return super().forward(x)
        return _Dropout.apply(x, keep_mask(x.shape, self.p), 1.0 / (1.0 - self.p))


class _AttentionDropout(torch.autograd.Function):
    """softmax(q k^T * scale + mask) with dropout (``keep``, survivors times 1 / (1 - p)), times v. Keeps q, k, v,
    the softmax output and the bool mask for the backward pass."""

    @staticmethod
    def forward(ctx, q, k, v, mask, keep, scale, p):
        scores = torch.matmul(q * scale, k.transpose(-1, -2))
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores.add_(mask)
        probs = torch.softmax(scores, -1)
        del scores
        ctx.save_for_backward(q, k, v, probs, keep)
        ctx.scale, ctx.survive = scale, 1.0 / (1.0 - p)
        return torch.matmul(torch.where(keep, probs, 0), v).mul_(ctx.survive)

    @staticmethod
    def backward(ctx, grad):
        q, k, v, probs, keep = ctx.saved_tensors
        need_q, need_k, need_v = ctx.needs_input_grad[:3]
        grad = grad * ctx.survive
        dropped = torch.where(keep, probs, 0)
        dv = torch.matmul(dropped.transpose(-1, -2), grad) if need_v else None
        if not (need_q or need_k):
            return None, None, dv, None, None, None, None
        # softmax backward of the dropped probabilities' gradient where(keep, g v^T, 0), in place:
        # probs * where(keep, g v^T, 0) = dropped * g v^T, and dscores = that - probs * its row sums
        dscores = torch.matmul(grad, v.transpose(-1, -2)).mul_(dropped)
        del dropped
        dscores.addcmul_(probs, dscores.sum(-1, keepdim=True), value=-1)
        dq = torch.matmul(dscores, k).mul_(ctx.scale) if need_q else None
        dk = torch.matmul(dscores.transpose(-1, -2), q).mul_(ctx.scale) if need_k else None
        return dq, dk, dv, None, None, None, None


def attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, p: float,
                           scale: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Attention of (batch, heads, length, dim) tensors with dropout p on its probabilities. ``mask`` is None, a
    bool tensor (True: attend) or an additive float tensor, broadcastable to (batch, heads, q length, k length);
    ``keep`` is the dropout mask (default: drawn by :func:`keep_mask`)."""
    if keep is None:
        keep = keep_mask((*q.shape[:-1], k.shape[-2]), p)
    return _AttentionDropout.apply(q, k, v, mask, keep, scale, p)


def _sdpa_stand_in(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                   is_causal: bool | None = None, **kwargs):
    """Attention with dropout computed by :func:`attention_with_dropout`; every other call goes to ``sdpa``."""
    special = any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "s_aux", "sinks"))
    if dropout == 0 or special or not _fast(query) or kwargs.get("output_attentions"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    mask = attention_mask
    if mask is None and causal and query.shape[2] > 1:
        mask = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool).tril()
    elif mask is not None:
        mask = mask[..., : key.shape[2]]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = attention_with_dropout(query, key, value, mask, dropout, scale)
    return out.transpose(1, 2).contiguous(), None


def _backbones(model: nn.Module) -> list:
    """The outermost transformers models inside ``model`` that take a registered attention implementation."""
    found, names = [], []
    for name, module in model.named_modules():
        if isinstance(module, PreTrainedModel) and not any(name.startswith(n + ".") or not n for n in names):
            names.append(name)
            if module._can_set_attn_implementation():
                found.append(module)
    return found


def supported(versions: dict[str, str] | None = None) -> bool:
    """Whether the installed transformers and torch are versions :data:`BUILT_FOR` names; logs once if not."""
    import transformers

    versions = versions or {"transformers": transformers.__version__, "torch": torch.__version__}
    wrong = {k: v for k, v in versions.items() if int(v.split(".")[0]) not in BUILT_FOR[k]}
    if wrong and not getattr(supported, "_said", False):
        supported._said = True
        log.warning("fast_dropout is off: it was built for transformers 5 and torch 2, not %s; training uses "
                    "PyTorch's own dropout", ", ".join(f"{k} {v}" for k, v in wrong.items()))
    return not wrong


@contextmanager
def fast_dropout(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """While the block runs, ``model``'s ``nn.Dropout`` layers are :class:`FastDropout` and its transformers
    backbones compute attention dropout with :func:`attention_with_dropout`; both are restored on exit."""
    if not enabled or not supported():
        yield model
        return
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                fast = FastDropout(child.p, child.inplace)
                fast.train(child.training)
                setattr(parent, name, fast)
                swapped.append((parent, name, child))
    AttentionInterface.register(ATTENTION, _sdpa_stand_in)
    # sdpa's masks: transformers builds no mask at all for an implementation without a mask function
    AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    switched = [b for b in _backbones(model) if b.config._attn_implementation == "sdpa"]
    for backbone in switched:
        backbone.set_attn_implementation(ATTENTION)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        for backbone in switched:
            backbone.set_attn_implementation("sdpa")
