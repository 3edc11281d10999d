"""The dependency arrows of the code point one way (README, "What it is made of").

core (settings, vocabulary, contracts) <- features <- training; features <- serving;
the simulator depends on the core only; analysis and the command line sit on top.
Every import is checked, including the ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nextbest", "features", "training", "serving", "simulator", "analysis")
TOP_MODULES = {"nextbest.cli", "nextbest.demo"}  # the command line: may use everything

# layer -> the layers it may import
ALLOWED = {
    "core": {"core"},
    "features": {"core", "features"},
    "training": {"core", "features", "training"},
    "serving": {"core", "features", "serving"},
    "simulator": {"core", "simulator"},
    "analysis": {"core", "features", "training", "serving", "simulator", "analysis"},
    "top": {"core", "features", "training", "serving", "simulator", "analysis", "top"},
}


def layer(module: str) -> str | None:
    if module in TOP_MODULES:
        return "top"
    head = module.split(".")[0]
    if head == "nextbest":
        return "core"
    return head if head in PACKAGES else None


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            yield ".".join(rel.parts).removesuffix(".__init__"), path


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda x: x if isinstance(x, str) else "")
def test_imports_point_one_way(module, path):
    own = layer(module)
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name} ({layer(name)})"
           for line, name in imports(path)
           if layer(name) is not None and layer(name) not in ALLOWED[own]]
    assert not bad, "\n".join(bad)


def test_the_layers_are_all_there():
    seen = {layer(m) for m, _ in modules()}
    assert seen == set(ALLOWED)
