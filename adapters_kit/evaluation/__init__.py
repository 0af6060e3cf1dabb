"""The evaluation layer: a model becomes metrics. ``evaluator`` streams a loader's batches through the model,
``metrics`` accumulates them (and backs the packaged ``evaluate`` modules in ``evaluate_modules/``).

The names of ``evaluator`` (``evaluate``, ``evaluate_splits`` ...) also import from here, loaded on first use.
"""

import importlib

_SUBMODULES = {"evaluator", "metrics"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    from adapters_kit.evaluation import evaluator

    try:
        return getattr(evaluator, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
