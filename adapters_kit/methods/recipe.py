"""Recipes: what each ``--method`` does, as one registered object the trainer asks (it never compares names).

A recipe says which adapter strategy trains the backbone (:mod:`adapters_kit.methods.adapters`), which extra
objective applies (DANN's domain loss, the joint source task), and which stages run, the last being the main one
(LP-FT's probe stage and autoencoder pretraining run before it; a probe's closed-form solve replaces it). Every
registered adapter strategy is a method of its own through :class:`Plain`; the wrapping recipes register themselves
in :mod:`adapters_kit.methods.lp_ft`, :mod:`adapters_kit.methods.domain` and :mod:`adapters_kit.methods.autoencoder`.

Recipes never load data or run a loop themselves: they ask the :class:`Context` the training layer hands them
(:class:`adapters_kit.train.job.Job`), so every stage runs through the same loop, with its accumulation, progress,
logging and checkpoints.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable, Protocol

from adapters_kit.config import TrainConfig
from adapters_kit.errors import UserError
from adapters_kit.methods.adapters import ADAPTERS, Adapter, Probe, build_adapter
from adapters_kit.methods.solvers import fit_logistic
from adapters_kit.registry import Registry
from adapters_kit.train.result import TrainResult


class Context(Protocol):
    """What a recipe may ask of the run it is part of (implemented by the training layer)."""

    cfg: TrainConfig
    task: Any
    """The run's task bound to its label space (:mod:`adapters_kit.tasks`): loss, metrics, output size."""
    objective: Any
    """The recipe's objective, built once before the model (it may add heads)."""
    processor: Any

    def print(self, text: str) -> None: ...

    def input_loaders(self) -> dict[str, Any]:
        """Loaders of model inputs for every split (training batches shuffled)."""

    def feature_loaders(self, model) -> dict[str, Any]:
        """Loaders of the frozen backbone's pooled features (cached) for the splits training reads."""

    def unlabelled(self, spec: str | None, seed_offset: int) -> Any:
        """A shuffled loader of the inputs of ``spec`` (labels never read), or of the training split's inputs."""

    def stream(self, spec: str, labelled: bool) -> tuple[Any, int]:
        """(endless batches of ``spec``'s training inputs on their own shuffling seed, its number of labels)."""

    def new_head(self, dim: int, num_labels: int) -> Any:
        """A fresh head of the run's kind."""

    def fit(self, model, train_loader, eval_loaders: dict, *, cfg: TrainConfig | None = None, objective=None,
            stage: str = "") -> Any:
        """Train through the loop (``stage`` names a pre-stage's checkpoints); returns a ``TrainResult``."""

    def evaluate(self, model, loader) -> dict[str, Any]: ...

    def variant(self, **changes: Any) -> dict[str, Any]:
        """The metrics of the same job trained with some settings changed (a baseline); nothing is kept."""


class Stage(Protocol):
    name: str
    """``main`` for the stage whose weights are saved; a pre-stage's name is in its checkpoints' folder names
    (``checkpoint-<name>-<step>``, lowercase letters)."""
    key: str
    """A pre-stage's entry in ``metrics.json``'s ``train`` figures (``<something>_stage``)."""

    def run(self, ctx: Context, model) -> Any:
        """The main stage returns a ``TrainResult``; a pre-stage the figures it reports."""


class Recipe:
    """A method's recipe. The base trains the backbone with ``cfg.method``'s own adapter strategy in one stage."""

    name: str = ""
    knobs: tuple[str, ...] = ()
    """Config fields the recipe reads beyond its adapter's (shown on the model card)."""
    wraps: bool = False
    """True when ``--adapter`` chooses the strategy it trains."""
    pooled: bool = False
    """True when the method works on one pooled vector per input (cached features, extra heads on them), so it
    cannot serve a task that scores every token."""
    solves_head: bool = False
    """True when the main stage solves the head as a logistic regression (the task must be single-label)."""
    min_per_label: int = 1
    """Training examples every label needs (a method that learns from pairs of one label needs two)."""

    def adapter(self, cfg) -> Adapter:
        return build_adapter(cfg.adapter if self.wraps else cfg.method)

    def describe(self, cfg) -> str:
        """What the model card says the method trained."""
        return self.adapter(cfg).card_text

    def card_knobs(self, cfg) -> tuple[str, ...]:
        """What the model card lists for this method, beyond the common training settings."""
        return (*self.knobs, *self.adapter(cfg).knobs)

    def defaults(self, cfg) -> dict[str, Any]:
        """lr, epochs and attention dropout when the config leaves them unset."""
        adapter = self.adapter(cfg)
        return {"lr": adapter.default_lr, "epochs": adapter.default_epochs,
                "attention_dropout": adapter.default_attention_dropout}

    def check(self, cfg: TrainConfig) -> None:
        """Refuse, before any work, settings this method cannot train with."""
        adapter = self.adapter(cfg)
        if cfg.probe_solver != "adamw" and not (adapter.frozen_backbone and cfg.head == "linear"
                                                and cfg.cache_features):
            raise UserError(f"invalid config: --probe-solver {cfg.probe_solver} fits a linear head on cached "
                            f"features: use it with --method {frozen_names()[0]}, --head linear and "
                            f"--cache-features true")

    def objective(self, ctx: Context) -> Any:
        """An extra training objective (None: the task's loss alone)."""
        return None

    def stages(self, cfg: TrainConfig) -> list[Stage]:
        adapter = self.adapter(cfg)
        if adapter.frozen_backbone and cfg.probe_solver == "lbfgs":
            return [ClosedForm()]
        return [Supervised(features=adapter.frozen_backbone and cfg.cache_features)]

    def extra_metrics(self, ctx: Context, metrics: dict[str, Any]) -> dict[str, Any]:
        """Entries the method adds to ``metrics.json`` after the final evaluation."""
        return {}


class Wrapping(Recipe):
    """A recipe around the adapter strategy named by ``--adapter``, which must be able to adapt the backbone."""

    wraps = True
    card_text = ""
    """What the model card says the method did."""
    needs: tuple[tuple[str, str], ...] = ()
    """(config field, what it holds) the method cannot run without, e.g. DANN's target-domain data."""

    def describe(self, cfg) -> str:
        return self.card_text

    def check(self, cfg: TrainConfig) -> None:
        for name, what in self.needs:
            if not getattr(cfg, name):
                raise UserError(f"invalid config: {self.name} needs --{name.replace('_', '-')} ({what})")
        if cfg.adapter not in ADAPTERS or self.adapter(cfg).frozen_backbone:
            raise UserError(f"invalid config: --adapter {cfg.adapter} cannot be trained by {cfg.method}: the "
                            f"backbone must be able to adapt (use {', '.join(adapting_names())})")
        super().check(cfg)


class Supervised:
    """The main stage: the loop over the labelled training split (on cached features for a frozen backbone)."""

    name = "main"

    def __init__(self, features: bool = False):
        self.features = features

    def run(self, ctx: Context, model) -> Any:
        loaders = ctx.feature_loaders(model) if self.features else ctx.input_loaders()
        result = ctx.fit(model, loaders["train"], {s: loaders[s] for s in ctx.cfg.split_list()},
                         objective=ctx.objective)
        result.on_features = self.features
        return result


class ClosedForm:
    """``--probe-solver lbfgs``: the linear head as a logistic regression on the cached training features, in one
    full-batch L-BFGS solve (each process solves the same problem identically); then one evaluation per split."""

    name = "main"

    def run(self, ctx: Context, model) -> Any:
        loaders = ctx.feature_loaders(model)
        features, labels = loaders["train"].dataset.tensors
        start = time.perf_counter()
        iterations = fit_logistic(model.head[-1], features, labels)
        seconds = time.perf_counter() - start
        ctx.print(f"linear head solved with L-BFGS: {iterations} iterations over {len(labels)} cached feature "
                  f"vectors in {seconds:.2f} s")
        result = TrainResult(best_epoch=1, best_step=iterations, train_seconds=seconds, train_samples=len(labels),
                             on_features=True)
        for split in ctx.cfg.split_list():
            metrics = ctx.evaluate(model, loaders[split])
            result.record(1, iterations, split, metrics)
            if split == "validation":
                result.best_metrics, result.best_score = metrics, metrics.get(ctx.cfg.best_metric)
        return result


class FeatureProbe:
    """A head-only stage on the untouched backbone's cached features, at the probe's learning rate (best epoch
    kept): LP-FT's first stage."""

    name, key = "lp", "probe_stage"

    def run(self, ctx: Context, model) -> dict[str, Any]:
        cfg = ctx.cfg.replace(lr=Probe.default_lr, epochs=ctx.cfg.probe_epochs, eval_steps=None,
                              eval_splits="validation", early_stopping_patience=None)
        features = ctx.feature_loaders(model)
        ctx.print(f"linear-probe stage: {cfg.epochs} epochs on cached features")
        result = ctx.fit(model, features["train"], {"validation": features["validation"]}, cfg=cfg)
        return {"validation_" + cfg.best_metric: result.best_score, "best_epoch": result.best_epoch}


class Plain(Recipe):
    """The recipe of a registered adapter strategy used as a method by itself (``--method lora``)."""

    def __init__(self, name: str):
        self.name = name


METHODS: Registry[Callable[[], Recipe]] = Registry("method")
"""``--method`` name -> recipe factory (the recipe classes themselves; a plain recipe per adapter strategy)."""
for _name in ADAPTERS.names():
    METHODS.register(_name)(partial(Plain, _name))


def get_recipe(name: str) -> Recipe:
    """The registered recipe of ``--method name``; unknown names raise with the list of valid ones."""
    return METHODS.get(name)()


def validate(cfg: TrainConfig) -> Recipe:
    """``cfg.method``'s recipe, after it checked the config."""
    recipe = get_recipe(cfg.method)
    recipe.check(cfg)
    return recipe


def frozen_names() -> list[str]:
    """Adapter strategies that keep the backbone frozen (their features can be cached)."""
    return [n for n in ADAPTERS.names() if build_adapter(n).frozen_backbone]


def adapting_names() -> list[str]:
    """Adapter strategies that train the backbone (what the wrapping recipes accept as ``--adapter``)."""
    return [n for n in ADAPTERS.names() if not build_adapter(n).frozen_backbone]
