"""Imports point one way (README, docs/core.md): core <- mcp_server <- {agent, dashboard} <- evals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# repository folder -> installed package name (pyproject's package-dir mapping)
PACKAGES = {"hotcb": "hotcb", "mcp_server": "hotcb.mcp_server", "agent": "hotcb.agent",
            "dashboard": "hotcb.dashboard", "evals": "hotcb.evals"}
UPPER = ("hotcb.mcp_server", "hotcb.agent", "hotcb.dashboard", "hotcb.evals")
FORBIDDEN = {
    "hotcb": UPPER,
    "mcp_server": ("hotcb.agent", "hotcb.dashboard", "hotcb.evals"),
    "agent": ("hotcb.dashboard", "hotcb.evals"),
    "dashboard": ("hotcb.agent", "hotcb.evals"),
}


def module_name(folder: str, path: Path) -> tuple[str, bool]:
    rel = path.relative_to(ROOT / folder).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGES[folder], *parts]), path.name == "__init__.py"


def imports_of(folder: str, path: Path) -> list[tuple[int, str]]:
    name, is_pkg = module_name(folder, path)
    return imports_in(path.read_text(encoding="utf-8"), name, is_pkg)


def imports_in(source: str, name: str, is_pkg: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import, relative ones resolved against ``name``."""
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]  # `from hotcb import agent`
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "require_extra") and node.args and isinstance(node.args[0], ast.Constant):
            out.append((node.lineno, str(node.args[0].value)))
    return out


def python_files(folder: str) -> list[Path]:
    base = ROOT / folder
    if folder == "hotcb":  # core is hotcb/ itself; the mapped layers live in their own folders
        return sorted(base.rglob("*.py"))
    return sorted(base.rglob("*.py")) if base.exists() else []


def hits(mod: str, banned: tuple[str, ...]) -> bool:
    return any(mod == b or mod.startswith(b + ".") for b in banned)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_one_way(folder: str) -> None:
    bad = []
    for path in python_files(folder):
        for line, mod in imports_of(folder, path):
            if hits(mod, FORBIDDEN[folder]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "layer violations:\n" + "\n".join(bad)


@pytest.mark.parametrize("folder", ["agent", "dashboard"])
def test_upper_layers_never_touch_the_command_files(folder: str) -> None:
    """agent and dashboard act only through the tool surface, never on the IPC files."""
    bad = []
    for path in sorted((ROOT / folder).rglob("*")):
        if not path.is_file() or path.suffix in (".png", ".ico", ".woff", ".woff2", ".pyc"):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for needle in ("commands.jsonl", "applied.jsonl"):
            if needle in text:
                bad.append(f"{path.relative_to(ROOT)} mentions {needle}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_violations() -> None:
    """The AST check resolves relative and absolute forms (else the tests above prove nothing)."""
    src = "from .agent import x\nimport hotcb.evals.cli\nfrom hotcb import dashboard\nfrom . import mcp_server\n"
    found = [m for _, m in imports_in(src, "hotcb.probe", False) if hits(m, UPPER)]
    assert {"hotcb.agent", "hotcb.evals.cli", "hotcb.dashboard", "hotcb.mcp_server"} <= set(found)
