"""The map of the README's "What is where", checked: which part may import which.

Every import of every file counts, including those inside functions. The libraries sit at the
bottom (`semcache` imports nothing of the project, `mail` only the cache's vector rule and errors
and the text helpers); `finder` and `services` join them; only the app (app.py, pages/, the
modules beside them) and the commands read the settings.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOT_MODULES = {path.stem for path in ROOT.glob("*.py")}
PACKAGES = {"semcache", "mail", "db", "pages", "benchmarks", "tests"}
PROJECT = ROOT_MODULES | PACKAGES

LIBRARY = {
    "semcache": set(),
    "mail": {"semcache", "markup"},
    "db": {"semcache", "mail"},  # the declared schema, and the cache's own migrations run with the app's
    "markup": set(),
    "message_view": {"mail"},
    "settings": set(),
    "finder": {"mail", "semcache"},
    "services": {"settings", "db", "mail", "semcache"},
    "app_text": {"semcache"},
    "demo_topics": {"semcache", "app_text"},
}
"""What each part below the app may import; the app (app.py, pages/, app_state, auth,
import_views) and `cache_cli` may import any of them."""

COMMANDS = {"mail/__main__.py": {"services", "settings"}, "db/accounts.py": {"services", "settings"},
            "db/migrations/env.py": {"settings"}}
"""Commands that live inside a library and run on the app's settings (`python -m mail worker`,
`python -m db.accounts create-admin`, `alembic` on its own)."""


def _part(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if relative.parts[0] in PACKAGES else relative.stem


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


def _sources():
    yield from ROOT.glob("*.py")
    for package in ("semcache", "mail", "db", "pages"):
        yield from (ROOT / package).rglob("*.py")


def layer_violations() -> list[str]:
    problems = []
    for path in _sources():
        part = _part(path)
        if part not in LIBRARY:
            continue
        allowed = LIBRARY[part] | COMMANDS.get(str(path.relative_to(ROOT)), set()) | {part}
        for name in sorted(_imports(path) - allowed):
            problems.append(f"{path.relative_to(ROOT)} imports {name}")
    return problems


def test_each_part_imports_only_what_the_map_allows():
    assert layer_violations() == []


def test_the_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The scan counts an import inside a function as much as one at the top."""
    module = tmp_path / "probe.py"
    module.write_text("def later():\n    import settings\n    from app_state import engine\n")
    assert _imports(module) == {"settings", "app_state"}


def test_every_root_module_and_package_has_a_place_in_the_map():
    """A new module beside app.py must be placed: in the library map, or in the app."""
    app = {"app", "app_state", "auth", "import_views", "cache_cli", "asgi", "session_cookie", "search_tools", "message_view"}
    assert ROOT_MODULES - app - set(LIBRARY) == set()


def test_no_page_shows_a_stray_string():
    """Streamlit writes any bare expression of a page's script to the page ("magic"): a string
    meant as a comment under a constant would appear above the page's content. Only the
    docstring (the first statement) is spared."""
    stray = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for node in body[1:]:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                stray.append(f"{path.name}:{node.lineno}")
    assert stray == []
