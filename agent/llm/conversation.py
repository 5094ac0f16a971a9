"""One wake's conversation so far: the messages sent, and what the tool loop counts between rounds.

The messages are kept in the chat-completions shape the API takes back: the model's tool calls
as an assistant message, each call's result as a tool message inside the untrusted-data fence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotcb.agent.llm.replies import ParsedCall
from hotcb.agent.llm.stance import Stances
from hotcb.agent.llm.untrusted import fence

MAX_TOOL_RESULT_CHARS = 4000


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

    def correct(self, corrective: str, unusable: str | None) -> None:
        """Ask again after an unusable reply, repeating its text first when it was calls written as
        text (so the model sees what it wrote)."""
        self.corrected = True
        if unusable:
            self.messages.append({"role": "assistant", "content": unusable})
        self.messages.append({"role": "user", "content": corrective})

    def calls(self, calls: list[ParsedCall], content: Any) -> None:
        """The model's tool calls, as native calls (written as text, its text is not repeated)."""
        self.messages.append({"role": "assistant", "content": content if calls[0].via == "native" else "",
                              "tool_calls": [{"id": c.id, "type": "function",
                                              "function": {"name": c.name, "arguments": c.arguments}} for c in calls]})

    def tool_result(self, c: ParsedCall, result: str) -> None:
        self.messages.append({"role": "tool", "tool_call_id": c.id, "content": fence(result[:MAX_TOOL_RESULT_CHARS])})
