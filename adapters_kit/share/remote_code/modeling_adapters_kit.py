"""An adapters_kit classifier as a plain transformers model: backbone + pooling + head.

Copied next to the weights by ``adapters-kit export --to merged`` (with ``configuration_adapters_kit.py``) and named
in ``config.json``'s ``auto_map``, so ``AutoModelFor...Classification.from_pretrained(folder, trust_remote_code=True)``
and ``pipeline(...)`` load it with only torch and transformers installed (no peft, no adapters_kit). No stock
transformers head pools the way adapters_kit does (mean pooling over real tokens, by default), hence this file; the
configuration's own ``model_type`` makes loading without ``trust_remote_code=True`` fail instead of falling back to a
stock class with a random head. Settings live in ``config.json``: ``backbone_config`` (the backbone's configuration),
``adapters_kit_pooling`` (mean, cls, last, pooler), ``adapters_kit_head`` (linear, mlp), ``adapters_kit_feature_dim``.
Works for text, image (ViT-style and CNN) and audio (wav2vec2-style and Whisper's encoder) backbones.
"""

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_adapters_kit import AdaptersKitConfig


def pool(hidden, mask, how):
    """Same arithmetic as adapters_kit.model.heads: masked mean, first position, or last real position."""
    if hidden.dim() == 4:  # CNN feature maps (batch, channels, height, width) -> positions
        hidden = hidden.flatten(2).transpose(1, 2)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        if mask is None:
            return hidden[:, -1]
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask.long()).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def build_head(kind, dim, num_labels, dropout=0.1):
    """The same module layout (and so the same weight names) as adapters_kit.model.heads."""
    if kind == "mlp":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout),
                             nn.Linear(dim, num_labels))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_labels))


class AdaptersKitClassifier(PreTrainedModel):
    """Backbone (its own transformers class, from the same config) + pooling + head; returns logits."""

    config_class = AdaptersKitConfig
    base_model_prefix = "backbone"

    def __init__(self, config):
        super().__init__(config)
        backbone = AutoModel.from_config(config.backbone_config)
        # Encoder-decoder speech models (Whisper) are used through their encoder, as adapters_kit trains them.
        encoder_only = getattr(config.backbone_config, "is_encoder_decoder", False)
        self.backbone = backbone.get_encoder() if encoder_only else backbone
        self.head = build_head(config.adapters_kit_head, config.adapters_kit_feature_dim, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        if input_ids is not None:
            inputs["input_ids"] = input_ids
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        out = self.backbone(**inputs)
        how = self.config.adapters_kit_pooling
        if how == "pooler" and getattr(out, "pooler_output", None) is not None:
            logits = self.head(out.pooler_output.flatten(1))
        else:
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            mask = attention_mask
            if mask is not None and mask.shape[1] != hidden.shape[1]:  # audio samples -> encoder frames
                mask = self.backbone._get_feature_vector_attention_mask(hidden.shape[1], mask)
            logits = self.head(pool(hidden, mask, how))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
