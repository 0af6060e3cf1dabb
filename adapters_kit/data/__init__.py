"""The data layer: a ``--data`` spec becomes raw splits (``files``), clean labelled splits (``splits``) and batches
(``loaders``); ``media`` reads image and audio files.

The names of ``splits`` (``load_splits``, ``prepare``, ``LabelMap`` ...) also import from here, loaded on first use
so that importing one submodule does not load the others.
"""

from adapters_kit._moved import lazy_exports

__getattr__ = lazy_exports(__name__, "splits", {"files", "loaders", "media", "splits"})
