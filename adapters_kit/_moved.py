"""Old module paths of modules that moved into the layer subpackages: importing one still works, with a
``DeprecationWarning`` naming the new path. The old paths are removed in version 0.3.0.

``MOVED`` is the one table; a meta-path finder answers for its keys by handing back the module at its new place, so
``from adapters_kit.loop import train`` and ``adapters_kit.train.loop.train`` are the same object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

REMOVED_IN = "0.3.0"
MOVED = {
    "adapters_kit.adapters": "adapters_kit.methods.adapters",
    "adapters_kit.atomic": "adapters_kit.runs.atomic",
    "adapters_kit.card": "adapters_kit.runs.card",
    "adapters_kit.catalog": "adapters_kit.builtin.catalog",
    "adapters_kit.checkpoint": "adapters_kit.runs.checkpoint",
    "adapters_kit.convert": "adapters_kit.builtin.convert",
    "adapters_kit.data_files": "adapters_kit.data.files",
    "adapters_kit.dropout": "adapters_kit.model.dropout",
    "adapters_kit.export": "adapters_kit.share.export",
    "adapters_kit.features": "adapters_kit.model.features",
    "adapters_kit.heads": "adapters_kit.model.heads",
    "adapters_kit.hub": "adapters_kit.share.hub",
    "adapters_kit.inference": "adapters_kit.runs.inference",
    "adapters_kit.loaders": "adapters_kit.data.loaders",
    "adapters_kit.loop": "adapters_kit.train.loop",
    "adapters_kit.media": "adapters_kit.data.media",
    "adapters_kit.metrics": "adapters_kit.evaluation.metrics",
    "adapters_kit.modeling": "adapters_kit.model.modeling",
    "adapters_kit.objectives": "adapters_kit.methods.domain",
    "adapters_kit.output": "adapters_kit.runs.output",
    "adapters_kit.plots": "adapters_kit.runs.plots",
    "adapters_kit.pretrain": "adapters_kit.methods.autoencoder",
    "adapters_kit.report": "adapters_kit.runs.report",
    "adapters_kit.resume": "adapters_kit.train.resume",
    "adapters_kit.solvers": "adapters_kit.methods.solvers",
}


def _caller():
    """(filename, line) of the first frame outside the import machinery and this file: the importing code."""
    frame = sys._getframe(1)
    while frame is not None and ("importlib" in frame.f_code.co_filename or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("<unknown>", 0)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MOVED[spec.name]
        filename, line = _caller()
        warnings.warn_explicit(f"{spec.name} moved to {new}; import it from there (the old path is removed in "
                               f"{REMOVED_IN})", DeprecationWarning, filename, line, module=spec.name)
        return importlib.import_module(new)  # sys.modules[old] becomes the new module itself

    def exec_module(self, module):
        """Nothing to run: the module was executed under its new name."""


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


def lazy_exports(package: str, module: str, submodules: set[str]):
    """A package's module ``__getattr__``: its ``submodules`` and the names of its ``module`` (where a module of the
    package's name used to be), each imported on first use, so importing one submodule loads no other."""

    def __getattr__(name):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
