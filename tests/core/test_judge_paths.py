"""One judge on every path: recipes, overlays, raw lines, the CLI and the
tool surface all meet the same rules, applied by the kernel whatever wrote the op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hotcb.mcp_server import HotcbTools
from mcp import Client
from mcp_types import Implementation

from hotcb.freeze import FreezeState
from hotcb.jsonl_write import append_line
from hotcb.ops import make_command
from hotcb.recipe import write_recipe
from tests.support.core_loop import Loop
from tests.support.mcp_scenario import error_text, stdio_params
from tests.support.proc import Trainer, wait_for

POPEN = {"kind": "module", "path": "subprocess", "symbol": "Popen"}


def _decision(run_dir: Path, cmd_id: str, timeout: float = 60.0) -> dict:
    from tests.support.proc import read_jsonl

    return wait_for(lambda: next((e for e in read_jsonl(run_dir / "hotcb.applied.jsonl") if e.get("cmd_id") == cmd_id),
                                 None), timeout, what=f"the decision on {cmd_id}")


def _hostile_recipe(marker: Path, step: int) -> list[dict]:
    return [
        {"step": step, "module": "cb", "op": "load", "id": "pwn", "target": POPEN,
         "params": {"args": ["sh", "-c", f"touch {marker}"]}},
        {"step": step, "module": "opt", "op": "set_params", "params": {"lr": 1.0}},  # x100
        {"step": step, "module": "core", "op": "stop"},
    ]


@pytest.mark.slow
def test_replay_through_real_mcp_cannot_run_code_or_human_ops(run_dir: Path, tmp_path: Path) -> None:
    """Item 1: an agent's recipe over a real ``hotcb mcp`` (stdio, default source agent) is refused
    whole, early, with the judge's reasons; written straight into the freeze file it is refused by
    the kernel; and nothing it carried ever ran."""
    marker = tmp_path / "pwned"
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer:
        trainer.wait_step(5)

        async def main() -> None:
            async with Client(stdio_params(run_dir), client_info=Implementation(name="red-team", version="1"),
                              read_timeout_seconds=120) as c:
                step = trainer.status()["step"] + 20
                text = error_text(await c.call_tool("replay", {"action": "start", "recipe": _hostile_recipe(marker, step),
                                                               "reason": "replay a good run"}))
                assert "not an allowed callback module" in text
                assert "core stop is reserved to humans" in text
                # lr x100 is within the knob's bounds, so the recipe may start; the entry is
                # judged as the agent's op when it fires, and the agent's ratio limit refuses it.
                step = trainer.status()["step"] + 10
                lr100 = [{"step": step, "module": "opt", "op": "set_params", "params": {"lr": 1.0}}]
                assert not (await c.call_tool("replay", {"action": "start", "recipe": lr100,
                                                         "reason": "replay"})).is_error
                # The freeze file is read on the kernel's watch interval, not at a known step: wait on the ledger.
                wait_for(lambda: [e for e in trainer.ledger() if e["source"] == "replay"], 60, what="the entry's decision")
                [e] = [e for e in trainer.ledger() if e["source"] == "replay"]
                assert e["decision"] == "rejected" and "limited to" in e["error"] and e["acting_for"] == "agent"
                assert not (await c.call_tool("replay", {"action": "stop", "reason": "done"})).is_error
                await anyio.sleep(0)
                wait_for(lambda: trainer.status().get("freeze_mode") == "off", 60, what="the replay stopped")
                # An overlay entry without a step is refused at start (it raised every step before).
                text = error_text(await c.call_tool("replay", {"action": "start", "recipe": [],
                                                               "overlay": [{"module": "opt", "op": "set_params",
                                                                            "params": {"lr": 0.02}}],
                                                               "reason": "tweak"}))
                assert "step must be a non-negative integer" in text

        anyio.run(main)

        # The kernel's own judgement: the same recipe written by hand as an agent's freeze file.
        step = trainer.status()["step"] + 10
        write_recipe(run_dir / "hotcb.recipe.replay.jsonl", _hostile_recipe(marker, step))
        FreezeState(mode="replay", recipe_path="hotcb.recipe.replay.jsonl", cmd_id="agent-freeze-1",
                    source="agent", actor="red-team", reason="replay").save(run_dir / "hotcb.freeze.json")
        e = _decision(run_dir, "agent-freeze-1")
        assert e["decision"] == "rejected" and "recipe refused" in e["error"]
        assert "not an allowed callback module" in e["error"] and "reserved to humans" in e["error"]
        trainer.wait_step(step + 20)
        assert trainer.alive() and trainer.status()["freeze_mode"] == "off"
        assert trainer.status()["internal_errors"] == 0
    assert not marker.exists()


def test_agent_replay_entries_act_for_the_agent_and_humans_are_not_locked_out(run_dir: Path) -> None:
    """A replay an agent started: each entry is judged as the agent's op when it fires (ratio
    limit), and a human's change meanwhile applies instead of coming back ignored_replay."""
    lp = Loop(run_dir, lr=0.05)
    lp.run(2)
    write_recipe(run_dir / "r.jsonl", [
        {"step": 5, "module": "opt", "op": "set_params", "params": {"lr": 0.04}},
        {"step": 8, "module": "opt", "op": "set_params", "params": {"lr": 0.001}},  # x0.025: refused
    ])
    cmd = lp.send("core", "freeze", {"mode": "replay", "recipe_path": "r.jsonl"}, source="agent", actor="bot",
                  reason="replay the good schedule")
    lp.run(1)
    assert lp.decision(cmd)["decision"] == "applied"
    lp.run(4)
    human = lp.send("loss", "set_params", {"l2_w": 0.001}, source="human", actor="ana")
    lp.run(6)
    fired = [e for e in lp.ledger() if e["source"] == "replay"]
    assert [e["decision"] for e in fired] == ["applied", "rejected"]
    assert all(e["acting_for"] == "agent" for e in fired)
    assert "limited to" in fired[1]["error"]
    assert lp.decision(human)["decision"] == "applied" and lp.weights["l2_w"] == 0.001
    lp.close()


@pytest.mark.parametrize("op, params, target", [
    ("stop", {}, None), ("freeze", {"mode": "prod"}, None), ("unfreeze", {}, None),
    ("lock", {"keys": ["lr"]}, None),
])
def test_raw_agent_lines_cannot_send_human_only_core_ops(run_dir: Path, op: str, params: dict, target) -> None:
    """Item 2: a raw line that says ``source: agent`` is judged as an agent's, not applied."""
    lp = Loop(run_dir)
    cmd = lp.send("core", op, params, source="agent", actor="raw", reason="because")
    lp.run(2)
    e = lp.decision(cmd)
    assert e["decision"] == "rejected" and "reserved to humans" in e["error"], e
    assert not lp.kernel.should_stop and lp.kernel.freeze.mode == "off" and not lp.kernel.locks
    lp.close()


@pytest.mark.parametrize("source", ["agent", "human", "yaml", "rule"])
def test_no_source_loads_code_from_outside_the_declared_places(run_dir: Path, source: str) -> None:
    """Items 2-3: ``subprocess:Popen`` or ``logging`` is refused to every source, a human's too;
    a module the training process declares is loaded."""
    lp = Loop(run_dir, allowed_callback_modules=["tests.support."])
    bad = lp.send("cb", "load", {"args": ["true"]}, id="x", target=POPEN, source=source, reason="r")
    log = lp.send("cb", "load", id="y", target={"kind": "module", "path": "logging", "symbol": "Logger"},
                  source=source, reason="r")
    private = lp.send("cb", "load", id="z", target={"kind": "module", "path": "hotcb.callbacks.timing",
                                                    "symbol": "_private"}, source=source, reason="r")
    lp.run(2)
    for cmd in (bad, log, private):
        e = lp.decision(cmd)
        assert e["decision"] == "rejected", e
    assert "not an allowed callback module" in lp.decision(bad)["error"]
    assert not lp.kernel.cb.callbacks
    lp.close()


def test_imported_names_are_not_callbacks(run_dir: Path) -> None:
    """A built-in module is allowed, but only what it defines: a name it imported is refused."""
    lp = Loop(run_dir)
    cmd = lp.send("cb", "load", id="p", target={"kind": "module", "path": "hotcb.callbacks.jsonl_logger",
                                                "symbol": "Path"})
    lp.run(1)
    e = lp.decision(cmd)
    assert e["decision"] == "failed" and "not defined in" in e["error"]
    lp.close()


def test_cli_path_meets_the_same_judge(run_dir: Path) -> None:
    """Item 2: the CLI writes a human's command; the kernel still refuses code from outside."""
    lp = Loop(run_dir)
    lp.run(1)
    out = subprocess.run([sys.executable, "-m", "hotcb.cli", "--dir", str(run_dir), "cb", "load", "x",
                          "--module", "subprocess:Popen", "--wait", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    lp.run(2)
    [e] = [e for e in lp.ledger() if e["module"] == "cb"]
    assert e["decision"] == "rejected" and "not an allowed callback module" in e["error"]
    lp.close()


@pytest.mark.parametrize("path", ["hotcb.applied.jsonl", "hotcb.commands.jsonl", "hotcb.metrics.jsonl",
                                  "../x.jsonl", "sub/x.jsonl", "notes.py"])
def test_logger_callback_cannot_write_the_kernels_files(run_dir: Path, path: str) -> None:
    """Item 3: the built-in JSONL logger writes only a plain ``*.jsonl`` of its own."""
    lp = Loop(run_dir)
    lp.run(1)
    cmd = lp.send("cb", "load", {"path": path}, id="log",
                  target={"kind": "module", "path": "hotcb.callbacks.jsonl_logger", "symbol": "JsonlLoggerCallback"})
    lp.run(3)
    e = lp.decision(cmd)
    assert e["decision"] == "failed", e
    assert all(isinstance(x, dict) and "seq" in x for x in lp.ledger())  # no foreign lines in the ledger
    assert "log" not in lp.kernel.cb.callbacks
    lp.close()


def test_tool_surface_asks_the_same_judge_early(run_dir: Path) -> None:
    """The tool surface refuses what the kernel would, with the kernel's reason, and records it."""
    lp = Loop(run_dir)
    lp.run(1)
    tools = HotcbTools(run_dir, source="agent", actor="bot", wait_s=0)
    for args, why in [
        ({"module": "core", "op": "stop", "reason": "done"}, "core stop is reserved to humans"),
        ({"module": "cb", "op": "load", "id": "x", "target": POPEN, "reason": "x"}, "not an allowed callback module"),
        ({"module": "opt", "op": "set_params", "params": {"lr": 0.04}}, "agent ops need a reason"),
    ]:
        with pytest.raises(Exception, match=why):
            tools.call("apply_op", args)
    lp.run(2)
    refused = [e for e in lp.ledger() if e["decision"] == "rejected"]
    assert len(refused) == 3 and all(e["source"] == "agent" for e in refused)
    lp.close()


def test_agent_change_equal_to_the_current_value_is_unchanged_and_starts_no_cooldown(run_dir: Path) -> None:
    lp = Loop(run_dir, lr=0.05)
    lp.run(1)
    same = lp.send("opt", "set_params", {"lr": 0.05}, source="agent", reason="keep")
    lp.run(1)
    e = lp.decision(same)
    assert e["decision"] == "unchanged" and "already in force" in e["error"]
    real = lp.send("opt", "set_params", {"lr": 0.04}, source="agent", reason="a little lower")
    lp.run(1)  # no cooldown from the unchanged op: applies at once
    assert lp.decision(real)["decision"] == "applied"
    lp.close()


def test_human_started_replay_stays_trusted(run_dir: Path) -> None:
    """A person's replay keeps its meaning: entries act for the human (no agent ratio limit)."""
    write_recipe(run_dir / "r.jsonl", [{"step": 3, "module": "opt", "op": "set_params", "params": {"lr": 0.001}}])
    lp = Loop(run_dir, lr=0.05)
    append_line(run_dir / "hotcb.commands.jsonl",
                make_command("core", "freeze", {"mode": "replay", "recipe_path": "r.jsonl"}, source="human"))
    lp.run(5)
    [e] = [e for e in lp.ledger() if e["source"] == "replay"]
    assert e["decision"] == "applied" and e["acting_for"] == "human"
    assert json.loads((run_dir / "hotcb.status.json").read_text())["freeze_source"] == "human"
    lp.close()


@pytest.mark.slow
def test_dashboard_human_cannot_load_code_from_outside(run_dir: Path, tmp_path: Path) -> None:
    """Item 3, through a real ``hotcb serve`` with its token (a human caller) and a live trainer:
    ``subprocess:Popen`` is refused by the judge at once, and the kernel records the refusal."""
    from tests.dashboard.test_dashboard_proc import ServeProcess

    marker = tmp_path / "pwned"
    load = {"module": "cb", "op": "load", "id": "x", "reason": "probe", "target": POPEN,
            "params": {"args": ["sh", "-c", f"touch {marker}"]}}
    with Trainer(run_dir, steps=100000, sleep=0.01) as trainer, ServeProcess(run_dir) as srv:
        trainer.wait_step(5)
        r = srv.post("/api/tools/apply_op", load)
        assert r.status_code == 409 and "not an allowed callback module" in r.json()["error"]
        cmd_id = r.json()["error"].rsplit("cmd_id ", 1)[1].rstrip(")")
        e = _decision(run_dir, cmd_id)
        assert e["decision"] == "rejected" and e["source"] == "human"
        trainer.wait_step(trainer.status()["step"] + 10)
        assert trainer.alive()
    assert not marker.exists()


def test_every_core_op_has_one_handler_and_kernel_options_are_typed(run_dir: Path) -> None:
    """Core ops are a table (one handler per op); the kernel's options are KernelConfig's fields."""
    from hotcb import HotKernel, KernelConfig
    from hotcb.core_ops import CORE_HANDLERS, CoreOps
    from hotcb.ops import CORE_OPS

    assert set(CORE_HANDLERS) == set(CORE_OPS) and all(hasattr(CoreOps, h) for h in CORE_HANDLERS.values())
    with pytest.raises(TypeError, match="unknown options"):
        HotKernel(run_dir, checkpoint_evry=5)
    k = HotKernel(run_dir, config=KernelConfig(max_steps=7), checkpoint_every=3)
    assert (k.config.max_steps, k.config.checkpoint_every, k.max_steps) == (7, 3, 7)
    k.close()
