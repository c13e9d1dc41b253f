"""The package's shape: no import cycle inside deskpulse/, and the README's module table
names exactly the modules that exist (issue 11)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .support import ROOT

PKG = ROOT / "deskpulse"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every deskpulse module this file imports, at any depth (local imports included),
    except under `if TYPE_CHECKING:`, which never runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("deskpulse"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("deskpulse"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # "from .config import X" may name a submodule or an attribute: keep real modules only,
        # and a package import means its __init__.
        edges[name] = {m for m in imports_of(path) if m in modules and m != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            # A package's own submodules importing the package (e.g. config/camera.py using
            # config/base.py) is not a cycle through __init__ unless __init__ imports back.
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_inside_the_package() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_readme_module_table_matches_the_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("| module | owns |", 1)[1].split("\n\n", 1)[0]
    named: set[str] = set()
    for cell in re.findall(r"^\| ([^|]+) \|", section, flags=re.M):
        named.update(re.findall(r"`([\w/.]+)`", cell))
    listed = {n for n in named if n.endswith(".py")}
    listed |= {f"deskpulse/{n}" for n in named if n.endswith(".py") and "/" not in n}
    listed = {n for n in listed if "/" in n}
    dirs = {n.rstrip("/") for n in named if n.endswith("/")}
    files = {str(p.relative_to(ROOT)) for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    covered = {f for f in files if f in listed or any(f.startswith(d + "/") for d in dirs)}
    assert files - covered == set(), f"modules missing from the README table: {sorted(files - covered)}"
    stale = {n for n in listed if n.startswith("deskpulse/") and not (ROOT / n).exists()}
    assert not stale, f"the README table names modules that don't exist: {sorted(stale)}"
