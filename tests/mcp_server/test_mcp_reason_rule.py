"""An external MCP client (``hotcb mcp RUN`` over stdio, source ``agent``) against a real training
subprocess: it may move back the plateau rule's lr cut only with a reason in its own words. One
copied from the rule's ledger reason is refused by the judge and the refusal is in the ledger; a
client a person drives (``--source human``) is never refused for its reason."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hotcb.mcp_server import HotcbTools
from mcp import Client
from mcp_types import Implementation

from tests.support.mcp_scenario import data, error_text, stdio_params, wait_async
from tests.support.proc import Trainer

ME = Implementation(name="pytest-veto", version="1.0")
RULE_REASON = ("rule plateau: val_loss plateaued: 0.001 relative improvement over 100 points (threshold 0.01); "
               "halve lr")


def connect(run_dir: Path, *extra: str) -> Client:
    return Client(stdio_params(run_dir, *extra), client_info=ME, read_timeout_seconds=120)


def lr_knob(tools: HotcbTools) -> tuple[str, float]:
    knob = next(a for a in tools.call("describe_actuators", {})["actuators"] if a["key"] == "lr")
    return knob["module"], knob["value"]


@pytest.mark.slow
def test_an_mcp_clients_veto_of_the_plateau_cut_needs_its_own_words(run_dir: Path) -> None:
    with Trainer(run_dir, "--guard-cooldown", "0", steps=100000, sleep=0.01) as trainer:
        trainer.wait_step(5, timeout=120)
        rules = HotcbTools(run_dir, source="rule", actor="plateau", wait_s=30)
        group, lr = lr_knob(rules)
        cut = rules.call("apply_op", {"module": group, "op": "set_params", "params": {"lr": lr / 2},
                                      "reason": RULE_REASON})
        assert cut["decision"] == "applied"

        async def main() -> None:
            async with connect(run_dir) as c:
                back = {"module": group, "op": "set_params", "params": {"lr": lr}, "wait_s": 30}
                text = error_text(await c.call_tool("apply_op", {**back, "reason": RULE_REASON}))
                assert "a veto of the plateau rule's lr change" in text and "not copied" in text

                async def refused() -> list[dict]:  # refused at once; the kernel records it at its next step
                    r = data(await c.call_tool("read_ledger", {"source": "agent", "decision": "rejected"}))
                    return r["entries"]

                (entry,) = await wait_async(refused, what="the refusal in the ledger")
                assert entry["actor"].startswith("pytest-veto") and "a veto of the plateau rule" in entry["error"]
                own = data(await c.call_tool("apply_op", {
                    **back, "reason": "train loss still falls fast, so the flat val_loss is noise"}))
                assert own["decision"] == "applied"
            # A client a person drives: their reason is theirs to choose.
            rules.call("apply_op", {"module": group, "op": "set_params", "params": {"lr": lr / 2},
                                    "reason": RULE_REASON})
            async with connect(run_dir, "--source", "human") as c:
                mine = data(await c.call_tool("apply_op", {
                    "module": group, "op": "set_params", "params": {"lr": lr}, "reason": RULE_REASON, "wait_s": 30}))
                assert mine["decision"] == "applied"

        anyio.run(main)
        assert lr_knob(rules)[1] == pytest.approx(lr)
        assert trainer.alive()
