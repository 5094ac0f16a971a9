"""Tool specifications, written once: name, description, pydantic input and output models,
annotations, and who may call it. The MCP binding, the dashboard API and the agent's
function-calling schema are all generated from this registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict


class ToolError(Exception):
    """A refusal or failure the caller should read: becomes an MCP tool error, an HTTP 4xx, or
    a tool message to the LLM. Never a crash. Each kind says its HTTP status by its type."""

    http_status = 409  # a conflict with the run's state: refused, rejected or failed in the kernel


class UnknownTool(ToolError):
    http_status = 404


class InvalidArguments(ToolError):
    http_status = 422


class Forbidden(ToolError):
    """Not for this caller at all (a person's tool or op), whatever the run's state."""

    http_status = 403


class Refused(ToolError):
    """The judge or the kernel said no to this op now (bounds, ratio, cooldown, lock, freeze)."""


class StrictInput(BaseModel):
    """Base of every tool input: unknown arguments are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    method: str
    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    human_only: bool = False
    title: str | None = None

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.output_model.model_json_schema()

    def openai_function(self) -> dict[str, Any]:
        """The OpenAI-compatible function-calling form of this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema()},
        }


TOOLS: dict[str, ToolSpec] = {}
F = TypeVar("F", bound=Callable[..., Any])


def tool(
    input_model: type[BaseModel],
    output_model: type[BaseModel],
    *,
    read_only: bool,
    destructive: bool = False,
    idempotent: bool = False,
    human_only: bool = False,
    name: str | None = None,
    title: str | None = None,
) -> Callable[[F], F]:
    """Register a ``HotcbTools`` method ``(self, args: input_model) -> output_model`` as a tool.
    Its docstring is the description the LLM reads."""

    def deco(fn: F) -> F:
        tool_name = name or fn.__name__
        doc = " ".join((fn.__doc__ or tool_name).split())
        TOOLS[tool_name] = ToolSpec(
            name=tool_name, description=doc, input_model=input_model, output_model=output_model,
            method=fn.__name__, read_only=read_only, destructive=destructive, idempotent=idempotent,
            human_only=human_only, title=title,
        )
        return fn

    return deco
