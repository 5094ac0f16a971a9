"""The words hotcb's records and tools share, as ``str`` enums: who acts (``Source``) and the
modes of freeze, tune and the autopilot. A member compares equal to its string and encodes as
it in JSON, so files, schemas and other layers that hold the plain strings read the same."""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    def __str__(self) -> str:  # the bare value in f-strings and str(), as the files write it
        return self.value

    __format__ = str.__format__

    def __repr__(self) -> str:  # as the plain string in messages that quote a value ({source!r})
        return repr(self.value)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Every member's string, in declaration order (argparse choices, error messages)."""
        return tuple(m.value for m in cls)


class Source(_Word):
    """Who an op acts for (a command's and a ledger entry's ``source``)."""

    HUMAN = "human"
    AGENT = "agent"
    RULE = "rule"
    TUNE = "tune"
    REPLAY = "replay"  # a recipe entry (a replay acts for whoever started it)
    YAML = "yaml"  # hotcb.yaml, the desired-state file
    KERNEL = "kernel"  # the kernel's own records (a resume's restore, a refused file); never a command's


# The sources a program speaks for (the rules, the LLM, online tuning), not a person or a recipe:
# what a run's story counts as the autopilot's doing.
AUTOMATED_SOURCES: tuple[Source, ...] = (Source.RULE, Source.AGENT, Source.TUNE)


class FreezeMode(_Word):
    """How the run takes commands: all (``off``), none but a person's core ops (``prod``), or
    those of a recorded recipe (``replay``; ``replay_adjusted`` lets people's ops in too)."""

    OFF = "off"
    PROD = "prod"
    REPLAY = "replay"
    REPLAY_ADJUSTED = "replay_adjusted"


class TuneMode(_Word):
    """What online tuning does: nothing, watch, propose, or apply its own changes."""

    OFF = "off"
    OBSERVE = "observe"
    SUGGEST = "suggest"
    ACTIVE = "active"


class AutopilotMode(_Word):
    """What the autopilot does: nothing, or rules (``suggest``/``auto``) or the LLM
    (``ai_suggest``/``ai_auto``) proposing changes for a person or applying them."""

    OFF = "off"
    SUGGEST = "suggest"
    AUTO = "auto"
    AI_SUGGEST = "ai_suggest"
    AI_AUTO = "ai_auto"

    @property
    def acts(self) -> bool:
        """Whether the autopilot (and so the rescue) applies changes itself in this mode."""
        return self in (AutopilotMode.AUTO, AutopilotMode.AI_AUTO)
