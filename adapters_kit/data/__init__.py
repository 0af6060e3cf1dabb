"""The data layer: a ``--data`` spec becomes raw splits (``files``), clean labelled splits (``splits``) and batches
(``loaders``); ``media`` reads image and audio files.

The names of ``splits`` (``load_splits``, ``prepare``, ``LabelMap`` ...) also import from here, loaded on first use
so that importing one submodule does not load the others.
"""

import importlib

_SUBMODULES = {"files", "loaders", "media", "splits"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    from adapters_kit.data import splits

    try:
        return getattr(splits, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
