"""No afmrl code unpickles arbitrary objects: every ``torch.load`` passes ``weights_only=True`` and no
``np.load`` allows pickles (read with ``ast``, so a new call site cannot slip in)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "afmrl"


def _calls(tree: ast.AST, module: str, name: str) -> list[ast.Call]:
    """Calls of ``module.name`` (``torch.load``) or of ``name`` imported from ``module``."""
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == module
                for a in n.names if a.name == name}  # fmt: skip
    aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
               if a.name == module}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == name and isinstance(f.value, ast.Name) and f.value.id in aliases) \
                or (isinstance(f, ast.Name) and f.id in imported):  # fmt: skip
            found.append(node)
    return found


def _keyword(call: ast.Call, key: str) -> object:
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def test_every_torch_load_is_weights_only_and_no_np_load_allows_pickles():
    torch_loads, offenders = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(PACKAGE.parent)
        for call in _calls(tree, "torch", "load"):
            torch_loads += 1
            if _keyword(call, "weights_only") is not True:
                offenders.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
        for call in _calls(tree, "numpy", "load"):
            if _keyword(call, "allow_pickle") not in (None, False):
                offenders.append(f"{where}:{call.lineno}: np.load with allow_pickle")
    assert torch_loads >= 2, "the scan found the known torch.load calls (trainer, pretrained)"
    assert not offenders, "\n".join(offenders)
