"""The library's layering: imports go down the layer order stated in README.md (Architecture), and no
files import each other in a circle.

Every ``afmrl`` module's imports are read with ``ast`` (module level and inside functions, ``if
TYPE_CHECKING`` blocks too), without importing anything. ``from afmrl.x import y`` counts as an
import of the module ``afmrl.x.y`` when that is a module, else of ``afmrl.x``; the implicit import of
a module's parent packages does not count. A module's layer is its sub-package (``afmrl.models.tiny``
-> ``models``) or, directly under ``afmrl``, its own name (``afmrl.config`` -> ``config``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "afmrl"


def readme_layers() -> list[list[str]]:
    """The numbered list after "Layers, bottom to top" in README.md: one list of names per layer."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("Layers, bottom to top")
    layers = []
    for line in text[start:].splitlines()[1:]:
        m = re.fullmatch(r"\d+\.\s+((?:`\w+`\s*)+)", line.strip())
        if m:
            layers.append(re.findall(r"`(\w+)`", m.group(1)))
        elif layers and line.strip():
            break
    return layers


def module_files() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported afmrl module, line)`` for every import statement in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def owner(dotted: str) -> str | None:  # the module an import of ``dotted`` executes
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        for t in targets:
            if t == "afmrl" or t.startswith("afmrl."):
                mod = owner(t)
                if mod is not None and mod != name:
                    found.append((mod, node.lineno))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def import_graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    modules = module_files()
    return modules, {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_readme_states_a_layer_for_every_part_of_the_package():
    layers = readme_layers()
    names = [n for layer in layers for n in layer]
    assert len(layers) >= 10 and len(names) == len(set(names)), layers
    parts = {layer_of(m) for m in module_files()} - {None}
    assert parts <= set(names), f"not placed in README.md's layer list: {sorted(parts - set(names))}"
    assert set(names) <= parts, f"README.md's layer list names what afmrl does not hold: {sorted(set(names) - parts)}"


def test_imports_only_go_down_the_layers():
    rank = {n: i for i, layer in enumerate(readme_layers()) for n in layer}
    modules, graph = import_graph()
    upward = []
    for name, targets in graph.items():
        here = layer_of(name)
        for target, line in targets:
            there = layer_of(target)
            if here is None:  # afmrl/__init__.py: the package docstring and version only
                upward.append(f"{modules[name].relative_to(REPO)}:{line} imports {target}")
            elif there is None or rank[there] > rank[here]:
                upward.append(f"{modules[name].relative_to(REPO)}:{line} ({here}) imports {target} ({there})")
    assert not upward, "imports up the layer order (README.md, Architecture):\n" + "\n".join(dict.fromkeys(upward))


def test_no_import_cycles_between_files_or_sub_packages():
    _, graph = import_graph()
    file_edges = {name: {t for t, _ in targets} for name, targets in graph.items()}
    assert not (found := cycles(file_edges)), f"files that import each other in a circle: {found}"
    package_edges: dict[str, set[str]] = {}
    for name, targets in file_edges.items():
        here = layer_of(name)
        if here is not None:
            package_edges.setdefault(here, set()).update(layer_of(t) for t in targets if layer_of(t) not in (None, here))
    assert not (found := cycles(package_edges)), f"sub-packages that import each other in a circle: {found}"


def test_the_checks_see_function_level_imports_and_cycles(tmp_path):
    """The walker finds imports inside functions and relative ones; the cycle finder finds a circle."""
    modules = {"afmrl.a": tmp_path / "a.py", "afmrl.b": tmp_path / "b.py", "afmrl.b.c": tmp_path / "c.py"}
    (tmp_path / "a.py").write_text("def f():\n    from afmrl.b import c\n    import afmrl.b\n")
    assert imports_of("afmrl.a", modules["afmrl.a"], modules) == [("afmrl.b.c", 2), ("afmrl.b", 3)]
    (tmp_path / "c.py").write_text("from . import a\n")  # relative: afmrl.b.a is not a module -> afmrl.b
    assert imports_of("afmrl.b.c", modules["afmrl.b.c"], modules) == [("afmrl.b", 1)]
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]
    assert cycles({"x": {"y"}, "y": set()}) == []
