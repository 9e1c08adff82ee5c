"""docs/architecture.md is true of the code: its modules, its layers, its import rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_voicepassword"
PAGE = ROOT / "docs" / "architecture.md"
LAYERS = ["foundation", "transport", "storage", "services", "interfaces"]
# Folders of the package that hold no Python of the layers.
ASSETS = {"locale", "static", "templates", "__pycache__"}
# What reaches the provider: an interface calls a service instead.
PROVIDER_ACCESS = {"VoicePasswordClient", "get_gateway"}
ROW = re.compile(r"^\| `([a-z_]+(?:\.py|/))` \| ([a-z]+) \|", re.MULTILINE)


def documented_layers() -> dict[str, str]:
    """The page's table: ``"calls.py"`` or ``"api/"`` → its layer."""
    return {match[1]: match[2] for match in ROW.finditer(PAGE.read_text(encoding="utf-8"))}


def unit_of(path: Path) -> str:
    """The table's name of the module or subpackage a file belongs to."""
    first = path.relative_to(PACKAGE).parts[0]
    return first if first.endswith(".py") else f"{first}/"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def runtime_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Each import of the file outside ``if TYPE_CHECKING:``, with the names it takes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = resolve(path, node)
            names = [alias.name for alias in node.names]
            found.append((module, names))
            # ``from django_voicepassword import calls`` imports the module calls.
            found += [(f"{module}.{name}", []) for name in names]
    return found


def target_unit(module: str) -> str | None:
    """The table's name of a module of the package (``None`` for any other)."""
    parts = module.split(".")
    if parts[0] != "django_voicepassword":
        return None
    if len(parts) == 1:
        return "__init__.py"
    if (PACKAGE / parts[1]).is_dir():
        return f"{parts[1]}/"
    return f"{parts[1]}.py" if (PACKAGE / f"{parts[1]}.py").is_file() else None


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_the_page_is_in_a_toctree():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert re.search(r"^architecture$", index, re.MULTILINE)


def test_every_module_is_in_the_table_and_every_row_is_a_module():
    table = documented_layers()
    on_disk = {
        child.name if child.is_file() else f"{child.name}/"
        for child in PACKAGE.iterdir()
        if child.name not in ASSETS and (child.suffix == ".py" or child.is_dir())
    }
    assert set(table) == on_disk
    assert set(table.values()) <= set(LAYERS)


def test_imports_never_point_up_a_layer():
    table = documented_layers()
    upward = []
    for path in sources():
        source = unit_of(path)
        for module, _ in runtime_imports(path):
            target = target_unit(module)
            if target is None or target == source:
                continue
            if LAYERS.index(table[target]) > LAYERS.index(table[source]):
                upward.append(f"{path.relative_to(ROOT)} imports {module} ({table[target]})")
    assert not upward


def test_no_interface_reaches_the_provider_itself():
    table = documented_layers()
    reaching = [
        f"{path.relative_to(ROOT)}: {sorted(PROVIDER_ACCESS & set(names))}"
        for path in sources()
        if table[unit_of(path)] == "interfaces"
        for _, names in runtime_imports(path)
        if PROVIDER_ACCESS & set(names)
    ]
    assert not reaching


@pytest.mark.parametrize("name", ["client.py", "exceptions.py"])
def test_the_client_and_its_errors_import_no_django(name):
    modules = [module for module, _ in runtime_imports(PACKAGE / name)]
    assert modules
    assert not [m for m in modules if m == "django" or m.startswith("django.")]


def test_the_import_reader_resolves_every_form_of_import():
    # The import reader resolves relative and package imports; a TYPE_CHECKING import is skipped.
    module = PACKAGE / "phone.py"
    imported = {m for m, _ in runtime_imports(module)}
    assert "django_voicepassword.conf" in imported
    assert target_unit("django_voicepassword.calls") == "calls.py"
    assert target_unit("django_voicepassword.api.views") == "api/"
    init = {m for m, _ in runtime_imports(PACKAGE / "__init__.py")}
    assert not any(m.startswith("django_voicepassword.gateways") for m in init)
    relative = {m for m, _ in runtime_imports(PACKAGE / "emulator" / "server.py")}
    assert "django_voicepassword.emulator.core" in relative
