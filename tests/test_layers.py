"""The import rules of STYLE.md, checked by parsing every module's imports."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).parents[1] / "adapters_kit"
LAYER = {
    "errors": 0, "config": 0, "config_sections": 0, "registry": 0, "memory": 0, "atomic": 0, "output": 0,
    "_moved": 0, "train.result": 0,
    "catalog": 1, "convert": 1, "dropout": 1, "media": 1, "metrics": 1, "modalities": 1, "heads": 1,
    "methods": 1, "methods.adapters": 1, "methods.solvers": 1, "methods.recipe": 1, "methods.lp_ft": 1,
    "methods.domain": 1, "methods.autoencoder": 1, "train.objectives": 1,
    "tasks": 1, "tasks.base": 1, "tasks.classification": 1,
    "data": 2, "data_files": 2, "loaders": 2, "modeling": 2, "features": 2,
    "train": 3, "train.loop": 3, "train.resume": 3, "train.setup": 3, "train.job": 3, "evaluation": 3,
    "checkpoint": 3,
    "inference": 4, "card": 4, "hub": 4, "export": 4, "plots": 4, "report": 4,
    "cli": 5, "trainer": 5, "__init__": 5, "__main__": 5, "sweep": 5,
}
L1_PEERS = {"modalities", "heads", "methods", "tasks"}
"""L1 strategies never import each other (inside a subpackage, its modules may)."""
ONLY = {"accelerate": {"train.loop", "train.setup", "train.job", "evaluation", "checkpoint", "inference", "hub",
                       "export", "cli", "trainer"},
        "peft": {"methods.adapters", "checkpoint"},
        "datasets": {"data", "data_files", "loaders", "modalities", "features", "cli"},
        "huggingface_hub": {"hub"}, "optuna": {"sweep"}, "matplotlib": {"plots"}, "rich": {"report", "cli"}}


def name_of(path: Path) -> str:
    """``train/loop.py`` -> ``train.loop``; a package's ``__init__.py`` is the package (the top one: ``__init__``)."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def group(name: str) -> str:
    return name.split(".")[0]


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
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
            found.add(dotted)
    return found - {name_of(path)}


@pytest.mark.parametrize("path", MODULES, ids=name_of)
def test_imports_point_downward(path):
    """Never upward; sideways only outside L1 (whose strategies never import each other)."""
    me = name_of(path)
    for other in internal(path):
        assert LAYER[other] <= LAYER[me], f"{me} (L{LAYER[me]}) imports {other} (L{LAYER[other]})"
        assert not (group(me) in L1_PEERS and group(other) in L1_PEERS and group(me) != group(other)), \
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
