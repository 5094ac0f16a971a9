"""One wake's conversation so far: the messages sent, and what the tool loop counts between rounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotcb.agent.llm.stance import Stances


@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    stances: Stances
    knobs: dict[tuple[Any, Any], Any]  # (module, key) -> value, as the model was shown them
    snapshots: int
    calls_made: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # calls refused this wake: the same one again ends it
    corrected: bool = False  # a corrective message was sent (once a wake)
    answered: bool = False   # the API answered at least once (a wake the model took part in)
    looping: bool = False    # a refused call was repeated

    def result(self, outcome: str, **detail: Any) -> dict[str, Any]:
        """What the wake returns: its outcome, any detail, and the calls it made."""
        return {"outcome": outcome, **detail, "tool_calls": self.calls_made, "actions": self.actions}
