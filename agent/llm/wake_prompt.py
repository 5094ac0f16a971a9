"""What a wake says to the model in words: its opening (the system prompt with the guard's numbers
in force, the mode's instructions, the run digest) and the corrective after an unusable reply."""

from __future__ import annotations

from typing import Any

from hotcb.agent.llm import digest
from hotcb.agent.llm.memory import AiMemory
from hotcb.agent.llm.stance import Stances
from hotcb.mcp_server.tools_protocol import AutopilotTools
from hotcb.prompts import load

from hotcb.guard import GuardConfig, ratio_text

CORRECTIVE = ("Your last reply could not be used: {why}. Reply with exactly one tool call, either through the "
              "tool-calling interface or as only this JSON: {{\"name\": \"apply_op\", \"arguments\": {{\"module\": "
              "\"opt\", \"op\": \"set_params\", \"params\": {{\"lr\": 0.01}}, \"reason\": \"...\"}}}}; or, if no "
              "change is needed, a short note in plain words without JSON.")


def opening(tools: AutopilotTools, memory: AiMemory, *, mode: str, why: str, alerts: list[dict[str, Any]],
            stances: Stances, describe: dict[str, Any]) -> list[dict[str, Any]]:
    """The wake's first two messages: the system prompt and the digest (with the model's notes and
    what was refused lately, from ``memory``)."""
    notes = memory.notes()
    # The guard's numbers as they are in force for this run, never a number written in a file.
    ratio = ratio_text(GuardConfig.from_dict(describe.get("guard")))
    system = load("autopilot_system").render(ratio_limit=ratio) + "\n" + load(f"autopilot_{mode}").render()
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": digest.build(tools, why=why, alerts=alerts, notes=notes, rules=stances.views,
                                                 refusals=memory.refusals(), describe=describe)},
    ]
