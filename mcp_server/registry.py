"""What a tool is (``ToolSpec``), the tool surface's errors, and the base of tool inputs.

The tools themselves are listed once, in order, in ``catalog.py``; the MCP binding, the
dashboard API and the agent's function-calling schema are all generated from that list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    pass


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


# Tool profiles (``hotcb mcp --tools``), smallest first; a profile serves its own tools and
# every smaller profile's. observe: read-only tools; control: plus the ops that steer the run.
Profile = Literal["observe", "control", "all"]
PROFILES: tuple[Profile, ...] = ("observe", "control", "all")
# ``core``: the five tools a small model's context can hold (read the run, steer one knob,
# see what happened), served without output schemas; not a step of the ladder above.
CORE_TOOLS = ("get_status", "read_trends", "describe_actuators", "apply_op", "read_ledger")
SERVED_PROFILES = ("core", *PROFILES)  # every --tools choice
# Who is served a tool: every caller, people only, or the autopilot process's own server only.
Audience = Literal["everyone", "human", "autopilot"]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name is the method of ``group`` that runs it (``group(...).name(args)``),
    whose docstring is the description the LLM reads."""

    name: str
    group: type
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    read_only: bool
    profile: Profile
    destructive: bool = False
    idempotent: bool = False
    audience: Audience = "everyone"
    title: str | None = None
    description: str = field(default="")

    def __post_init__(self) -> None:
        handler = getattr(self.group, self.name, None)
        if not callable(handler):
            raise TypeError(f"tool {self.name!r}: {self.group.__name__} has no method {self.name}")
        if self.read_only != (self.profile == "observe"):
            raise ValueError(f"tool {self.name!r}: the observe profile is exactly the read-only tools")
        if not self.description:
            object.__setattr__(self, "description", " ".join((handler.__doc__ or self.name).split()))

    @property
    def human_only(self) -> bool:
        return self.audience == "human"

    @property
    def method(self) -> str:  # the group's method that runs the tool
        return self.name

    def in_profile(self, profile: str) -> bool:
        if profile not in SERVED_PROFILES:
            raise ValueError(f"unknown tool profile {profile!r} (profiles: {', '.join(SERVED_PROFILES)})")
        if profile == "core":
            return self.name in CORE_TOOLS
        return PROFILES.index(self.profile) <= PROFILES.index(profile)  # type: ignore[arg-type]

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

