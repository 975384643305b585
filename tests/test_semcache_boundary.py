"""`semcache` is a library of its own: nothing under `semcache/` imports the app or reads the
environment, so it could be published and used without this app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "semcache"
APP_MODULES = frozenset({"services", "settings", "db", "mail", "pages", "streamlit", "benchmarks", "app_state",
                         "auth", "finder", "import_views", "markup", "app"})


def violations(tree: ast.AST) -> list[str]:
    """App imports (at any depth, inside functions too) and reads of the environment in one module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
            if node.level == 0 and node.module == "os":
                names += [f"os.{alias.name}" for alias in node.names]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in APP_MODULES:
                found.append(f"line {node.lineno}: imports {name}")
            if name in ("os.environ", "os.getenv", "os.environb", "os.putenv"):
                found.append(f"line {node.lineno}: imports {name}")
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "putenv")
                and isinstance(node.value, ast.Name) and node.value.id == "os"):
            found.append(f"line {node.lineno}: reads os.{node.attr}")
    return found


def test_the_checker_finds_each_kind_of_violation():
    source = ("import os\nimport settings\nfrom db.engine import migrate\nfrom os import environ\n"
              "def f():\n    import services\n    return os.getenv('X'), os.environ['Y']\n"
              "from . import cache\nfrom semcache.cache import SemanticCache\nimport streamlit as st\n")
    assert [v.split(": ")[1] for v in violations(ast.parse(source))] == [
        "imports settings", "imports db.engine", "imports os.environ", "imports streamlit",
        "imports services", "reads os.getenv", "reads os.environ"]


def test_semcache_imports_nothing_of_the_app_and_reads_no_environment():
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 10
    found = {str(path.relative_to(ROOT)): v for path in files
             if (v := violations(ast.parse(path.read_text(), filename=str(path))))}
    assert found == {}
