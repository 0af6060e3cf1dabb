"""The configuration of an adapters_kit classifier exported with ``adapters-kit export --to merged``.

Its ``model_type`` (``adapters_kit``) is its own, on purpose: transformers knows no model of that name, so the folder
loads only through its ``config.json``'s ``auto_map`` (this file and ``modeling_adapters_kit.py``), that is with
``trust_remote_code=True``. Without it ``AutoConfig``, every ``AutoModelFor...`` class and ``pipeline`` stop with
transformers' own error asking for ``trust_remote_code=True``, instead of building the backbone's stock
classification class (BERT's, say) with a new, random head. The backbone's own configuration is kept whole, as
``backbone_config``; the pooling, head and feature size sit beside it. Imports only transformers.
"""

from transformers import AutoConfig, PretrainedConfig


class AdaptersKitConfig(PretrainedConfig):
    """Backbone configuration + pooling (mean, cls, last, pooler) + head (linear, mlp) + the pooled feature size."""

    model_type = "adapters_kit"

    def __init__(self, backbone_config=None, adapters_kit_pooling="mean", adapters_kit_head="linear",
                 adapters_kit_feature_dim=None, **kwargs):
        if isinstance(backbone_config, dict):  # as read from config.json: the backbone's class from its model_type
            backbone_config = AutoConfig.for_model(**backbone_config)
        self.backbone_config = backbone_config
        self.adapters_kit_pooling = adapters_kit_pooling
        self.adapters_kit_head = adapters_kit_head
        self.adapters_kit_feature_dim = adapters_kit_feature_dim
        super().__init__(**kwargs)
