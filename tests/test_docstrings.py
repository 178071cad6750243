"""Every public function of the public surface says what it answers (issue 12): the projection's
methods, the HTTP routes and their helpers, and the CLI's commands."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURFACE = (
    "refproj/projection_async.py",
    "refproj/web/api.py",
    "refproj/web/http.py",
    "refproj/cli/__init__.py",
    "refproj/cli/commands.py",
)


def public_functions(nodes: list[ast.stmt], prefix: str = "") -> list[tuple[str, ast.AST]]:
    found: list[tuple[str, ast.AST]] = []
    for node in nodes:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            found.append((prefix + node.name, node))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            found += public_functions(node.body, f"{prefix}{node.name}.")
    return found


def test_public_functions_of_the_surface_have_docstrings() -> None:
    undocumented = [
        f"{module}:{name}"
        for module in SURFACE
        for name, node in public_functions(ast.parse((ROOT / module).read_text()).body)
        if ast.get_docstring(node) is None  # type: ignore[arg-type]
    ]
    assert undocumented == []


def test_route_handlers_name_their_route_and_status() -> None:
    tree = ast.parse((ROOT / "refproj/web/api.py").read_text())
    service = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Service")
    handlers = [
        (name, ast.get_docstring(node) or "")  # type: ignore[arg-type]
        for name, node in public_functions(service.body)
        if isinstance(node, ast.AsyncFunctionDef) and [a.arg for a in node.args.args] == ["self", "request"]
    ]
    assert len(handlers) == 8
    assert [
        name for name, doc in handlers if not (doc.startswith(("GET /", "POST /")) and "200" in doc)
    ] == []
