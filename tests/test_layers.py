"""The import rules of STYLE.md, checked by parsing every module's imports."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).parents[1] / "adapters_kit"
LAYER = {
    "errors": 0, "config": 0, "registry": 0, "memory": 0, "atomic": 0, "output": 0,
    "catalog": 1, "convert": 1, "dropout": 1, "media": 1, "metrics": 1, "modalities": 1, "heads": 1, "adapters": 1,
    "objectives": 1,
    "data": 2, "data_files": 2, "modeling": 2, "features": 2, "solvers": 2,
    "loop": 3, "pretrain": 3, "evaluation": 3, "checkpoint": 3, "resume": 3,
    "inference": 4, "card": 4, "hub": 4, "export": 4, "plots": 4, "report": 4,
    "cli": 5, "trainer": 5, "__init__": 5, "__main__": 5, "bench": 5, "bench_sides": 5, "sweep": 5,
}
L1_PEERS = {"modalities", "heads", "adapters", "objectives"}
ONLY = {"accelerate": {"loop", "evaluation", "checkpoint", "inference", "hub", "export", "cli", "trainer"},
        # bench_sides holds the hand-written Trainer + PEFT baseline the benchmark compares against.
        "peft": {"adapters", "checkpoint", "bench_sides"},
        "datasets": {"data", "data_files", "modalities", "features", "cli"},
        "huggingface_hub": {"hub"}, "optuna": {"sweep"}, "matplotlib": {"plots"}, "rich": {"report", "cli"}}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(p for p in PKG.glob("*.py"))


def test_every_module_has_a_layer():
    assert {p.stem for p in MODULES} <= set(LAYER), "add new modules to LAYER"


def internal(path: Path) -> set[str]:
    return {n.split(".")[1] for n in imports(path) if n.startswith("adapters_kit.")}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_imports_point_downward(path):
    """Never upward; sideways only outside L1 (whose strategies never import each other)."""
    me = path.stem
    for other in internal(path):
        assert LAYER[other] <= LAYER[me], f"{me} (L{LAYER[me]}) imports {other} (L{LAYER[other]})"
        assert not (me in L1_PEERS and other in L1_PEERS), f"L1 modules never import each other: {me}->{other}"
    for name in imports(path):
        top = name.split(".")[0]
        for lib, allowed in ONLY.items():
            if top == lib:
                assert me in allowed, f"only {sorted(allowed)} may import {lib}; {me} does"
        if LAYER[me] == 0:
            assert top not in {"torch", "transformers", "peft", "accelerate", "datasets"}, f"{me} imports {top}"


def test_no_import_cycles():
    graph = {p.stem: internal(p) - {"__init__"} for p in MODULES}

    def visit(node, stack):
        assert node not in stack, f"import cycle: {' -> '.join(stack + [node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, stack + [node])

    for node in graph:
        visit(node, [])


def test_no_print_outside_cli():
    for path in MODULES:
        if path.stem in {"cli"}:
            continue
        calls = [n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"print() in {path.name}; use logging or accelerator.print"


def test_all_is_sorted_and_complete():
    import adapters_kit

    assert adapters_kit.__all__ == sorted(adapters_kit.__all__)
    for name in adapters_kit.__all__:
        assert getattr(adapters_kit, name) is not None
