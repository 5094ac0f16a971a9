"""Versioned prompt files, shipped as package data (``hotcb.prompts``).

Each ``*.md`` file here starts with a front-matter block::

    ---
    name: autopilot_system
    version: 1
    description: one line
    arguments: [{name: run_goal, description: ..., required: false}]
    mcp: true            # also served as an MCP prompt
    ---
    body with {placeholders}

``load(name)`` returns the highest version of a prompt; ``render(name, **kw)`` fills it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

_FRONT = re.compile(r"^---\n(.*?)\n---\n(.*)$", re.S)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    description: str
    body: str
    arguments: list[dict[str, Any]] = field(default_factory=list)
    mcp: bool = False
    file: str = ""

    def render(self, **values: Any) -> str:
        """Fill ``{placeholders}``; unknown placeholders stay as written (no eval, no format spec)."""
        return re.sub(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}",
                      lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), self.body)


def _parse(file_name: str, text: str) -> Prompt | None:
    m = _FRONT.match(text)
    if not m:
        return None
    meta = yaml.safe_load(m.group(1)) or {}
    return Prompt(name=str(meta["name"]), version=int(meta.get("version", 1)),
                  description=str(meta.get("description", "")), body=m.group(2).strip() + "\n",
                  arguments=list(meta.get("arguments") or []), mcp=bool(meta.get("mcp", False)), file=file_name)


def all_prompts() -> list[Prompt]:
    """Every prompt file, every version."""
    out = []
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".md"):
            p = _parse(entry.name, entry.read_text(encoding="utf-8"))
            if p is not None:
                out.append(p)
    return out


def latest() -> dict[str, Prompt]:
    """The highest version of each prompt, by name."""
    best: dict[str, Prompt] = {}
    for p in all_prompts():
        if p.name not in best or p.version > best[p.name].version:
            best[p.name] = p
    return best


def load(name: str, version: int | None = None) -> Prompt:
    for p in all_prompts() if version is not None else latest().values():
        if p.name == name and (version is None or p.version == version):
            return p
    raise KeyError(f"no prompt {name!r}" + (f" version {version}" if version else ""))
