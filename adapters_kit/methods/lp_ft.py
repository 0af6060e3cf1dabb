"""LP-FT (Kumar et al., 2022): linear probe, then fine-tune.

The head is first trained alone on the frozen backbone's cached features (``probe_epochs`` epochs at the probe's
learning rate); then the second stage (``lp_ft_stage``: LoRA, whose B matrices start at zero so the adapted backbone
computes exactly the pretrained features, or full fine-tuning) trains with the head from that probed head. The run is
saved like the second stage's own method.
"""

from __future__ import annotations

from typing import Any

from adapters_kit.errors import UserError
from adapters_kit.methods.adapters import build_adapter
from adapters_kit.methods.recipe import METHODS, FeatureProbe, Recipe, Supervised, adapting_names


@METHODS.register("lp-ft")
class LpFt(Recipe):
    name = "lp-ft"
    pooled = True
    knobs = ("lp_ft_stage", "probe_epochs")

    def adapter(self, cfg):
        return build_adapter(cfg.lp_ft_stage)

    def describe(self, cfg) -> str:
        return f"{self.adapter(cfg).card_text} trained after a linear-probe stage (LP-FT)"

    def defaults(self, cfg) -> dict[str, Any]:
        # Lower than LoRA's own 2e-3: the head starts trained, and a gentler second stage keeps its features.
        return {"lr": 1e-3, "epochs": 2, "attention_dropout": 0.0}

    def check(self, cfg) -> None:
        if cfg.lp_ft_stage not in adapting_names():
            raise UserError(f"invalid config: lp_ft_stage must be an adapter that trains the backbone "
                            f"({', '.join(adapting_names())}), got {cfg.lp_ft_stage!r}")
        super().check(cfg)

    def stages(self, cfg) -> list:
        return [FeatureProbe(), Supervised()]
