"""The evaluation layer: a model becomes metrics. ``evaluator`` streams a loader's batches through the model,
``metrics`` accumulates them (and backs the packaged ``evaluate`` modules in ``evaluate_modules/``).

The names of ``evaluator`` (``evaluate``, ``evaluate_splits`` ...) also import from here, loaded on first use.
"""

from adapters_kit._moved import lazy_exports

__getattr__ = lazy_exports(__name__, "evaluator", {"evaluator", "metrics"})
