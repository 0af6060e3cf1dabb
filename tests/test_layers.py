"""The import rules of STYLE.md, checked by parsing every module's imports."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).parents[1] / "adapters_kit"
LAYER = {
    "errors": 0, "config": 0, "config_sections": 0, "config_values": 0, "registry": 0, "memory": 0, "_moved": 0,
    "runs.atomic": 0, "runs.output": 0, "train.result": 0,
    "builtin": 1, "builtin.catalog": 1, "builtin.convert": 1, "builtin.task_data": 1, "builtin.resolve": 1,
    "modalities": 1,
    "data.media": 1, "evaluation.timing": 1, "model.dropout": 1, "model.heads": 1, "evaluation.metrics": 1,
    "methods": 1, "methods.adapters": 1, "methods.solvers": 1, "methods.recipe": 1, "methods.lp_ft": 1,
    "methods.domain": 1, "methods.autoencoder": 1, "train.objectives": 1,
    "tasks": 1, "tasks.base": 1, "tasks.labels": 1, "tasks.classification": 1, "tasks.multilabel": 1,
    "tasks.regression": 1, "evaluation.multilabel": 1, "evaluation.regression": 1, "evaluation.entities": 1,
    "data": 2, "data.splits": 2, "data.files": 2, "data.loaders": 2, "data.conll": 2, "tasks.token": 1,
    "model": 2, "model.modeling": 2, "model.features": 2,
    "methods.distillation": 1, "methods.contrastive": 1,
    "distill": 3, "distill.student": 3, "distill.teacher": 3, "distill.speed": 3, "distill.job": 3,
    "train": 3, "train.loop": 3, "train.resume": 3, "train.setup": 3, "train.job": 3,
    "evaluation": 3, "evaluation.evaluator": 3, "runs.checkpoint": 3,
    "runs": 4, "runs.inference": 4, "runs.pool": 4, "runs.card": 4, "runs.plots": 4, "runs.report": 4,
    "share": 4, "share.hub": 4, "share.export": 4, "share.measure": 4, "share.token_export": 4,
    "serve": 5, "serve.options": 5, "serve.inputs": 5, "serve.batcher": 5, "serve.metrics": 5, "serve.app": 5,
    "serve.paths": 5, "serve.server": 5,
    "cli": 5, "trainer": 5, "__init__": 5, "__main__": 5, "sweep": 5,
}
L1_PEERS = {"modalities", "model.heads", "methods", "tasks"}
"""L1 strategies never import each other (inside a subpackage, its modules may)."""
ONLY = {"accelerate": {"train.loop", "train.setup", "train.job", "evaluation.evaluator", "runs.checkpoint",
                       "runs.inference", "share.hub", "share.export", "cli", "trainer"},
        "peft": {"methods.adapters", "runs.checkpoint", "runs.pool"},
        "fastapi": {"serve.app"}, "uvicorn": {"serve.server"}, "prometheus_client": {"serve.metrics"},
        "datasets": {"data.splits", "data.files", "data.loaders", "data.conll", "modalities", "model.features", "cli"},
        "huggingface_hub": {"share.hub"}, "optuna": {"sweep"}, "matplotlib": {"runs.plots"},
        "rich": {"runs.report", "cli"}}


def name_of(path: Path) -> str:
    """``train/loop.py`` -> ``train.loop``; a package's ``__init__.py`` is the package (the top one: ``__init__``)."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def peer(name: str) -> str | None:
    """The L1 strategy group ``name`` belongs to (``methods.domain`` -> ``methods``), if any."""
    return next((p for p in L1_PEERS if name == p or name.startswith(p + ".")), None)


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            # each imported name, qualified: ``from adapters_kit.data import media`` is the module data.media,
            # ``from adapters_kit.data import LabelMap`` resolves back to the package data
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


MODULES = sorted(p for p in PKG.rglob("*.py") if not {"remote_code", "evaluate_modules"} & set(p.parts))


def test_every_module_has_a_layer():
    assert {name_of(p) for p in MODULES} <= set(LAYER), "add new modules to LAYER"


def internal(path: Path) -> set[str]:
    """The package modules ``path`` imports, as LAYER names (``from adapters_kit.methods import x`` -> methods)."""
    found = set()
    for n in imports(path):
        if n.startswith("adapters_kit."):
            dotted = n[len("adapters_kit."):]
            while dotted not in LAYER and "." in dotted:
                dotted = dotted.rsplit(".", 1)[0]
            found.add(dotted if dotted in LAYER else "__init__")  # a name of the package itself
    return found - {name_of(path)}


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_imports_point_downward(path):
    """Never upward; sideways only outside L1 (whose strategies never import each other)."""
    me = name_of(path)
    for other in internal(path):
        assert LAYER[other] <= LAYER[me], f"{me} (L{LAYER[me]}) imports {other} (L{LAYER[other]})"
        assert not (peer(me) and peer(other) and peer(me) != peer(other)), \
            f"L1 modules never import each other: {me}->{other}"
    for name in imports(path):
        top = name.split(".")[0]
        for lib, allowed in ONLY.items():
            if top == lib:
                assert me in allowed, f"only {sorted(allowed)} may import {lib}; {me} does"
        if LAYER[me] == 0:
            assert top not in {"torch", "transformers", "peft", "accelerate", "datasets"}, f"{me} imports {top}"


def test_no_import_cycles():
    graph = {name_of(p): internal(p) - {"__init__"} for p in MODULES}

    def visit(node, stack):
        assert node not in stack, f"import cycle: {' -> '.join(stack + [node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, stack + [node])

    for node in graph:
        visit(node, [])


def test_no_print_outside_cli():
    for path in MODULES:
        if name_of(path) in {"cli"}:
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"print() in {path.name}; use logging or accelerator.print"


def test_all_is_sorted_and_complete():
    import adapters_kit

    assert adapters_kit.__all__ == sorted(adapters_kit.__all__)
    for name in adapters_kit.__all__:
        assert getattr(adapters_kit, name) is not None


OUTSIDE = sorted(p for folder in ("benchmarks", "scripts") for p in (PKG.parent / folder).rglob("*.py"))


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_scripts_and_benchmarks_use_only_the_public_names(path):
    """``import adapters_kit`` or ``from adapters_kit import <a name of __all__>``: never a module inside the
    package, whose paths may change, nor a name it does not export."""
    import adapters_kit

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("adapters_kit.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "adapters_kit":
            if node.module != "adapters_kit":
                found.append(node.module)
            else:
                found += [f"adapters_kit.{a.name}" for a in node.names if a.name not in adapters_kit.__all__]
    assert not found, f"{path.name} imports {', '.join(found)}; use adapters_kit.__all__ (add a public name if needed)"
