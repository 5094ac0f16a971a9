"""The judge's reason rule: a model (source ``agent``: the built-in LLM autopilot or an external
MCP client) that moves back a recent protective change -- the rescue's cut, a protective rule's
change -- or rolls the run back needs a reason in its own words: at least four words, not copied
from a text the run showed (its ledger's reasons and refusals, its alerts). A person may say what
they like. The kernel judges it over the run's own files; the tool surface asks the same
function first. Real kernels in real training loops, and the real tool surface."""

from __future__ import annotations

import difflib
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.tools import HotcbTools

from hotcb.jsonl import read_all
from hotcb.jsonl_write import append_line
from hotcb.judge import VETO_WINDOW_STEPS, View, judge
from hotcb.ops import make_command, parse_command
from hotcb.reasons import MAX_COMPARED, copied, own_words_refusal
from hotcb.recent_record import record_of
from hotcb.recipe import write_recipe
from hotcb.rescue import rescue_of
from tests.support.core_loop import Loop

SAW = "val_loss plateaued: 0.001 relative improvement over 100 points (threshold 0.01)"
RULE_REASON = f"rule plateau: {SAW}; halve lr"
OWN = "train loss still falls fast, so the flat val_loss is noise from the small val split"


# ---------------------------------------------------------------------- the own-words test
def _difflib_copied(reason: str, shown: list[str]) -> bool:
    """The test as the autopilot wrote it first: difflib's longest match, per shown text."""
    def norm(t: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"[^\w.%-]+", " ", t.lower())).strip()
    mine = norm(reason)
    for text in shown:
        theirs = norm(text)
        if mine and theirs:
            m = difflib.SequenceMatcher(None, mine, theirs, autojunk=False).find_longest_match(
                0, len(mine), 0, len(theirs))
            if m.size >= 0.6 * len(mine):
                return True
    return False


def test_the_copy_test_gives_difflibs_answer():
    rng = random.Random(7)
    words = ["val_loss", "lr", "plateau", "rule", "halve", "the", "of", "0.001", "x0.5", "refused", "cooldown",
             "improvement", "over", "points", "steps", "noise", "train", "falls"]

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    for _ in range(600):
        shown = [sentence(rng.randint(1, 25)) for _ in range(4)]
        if rng.random() < 0.5:  # a piece of a shown text, maybe with words of its own around it
            base = rng.choice(shown).split()
            a = rng.randint(0, len(base))
            reason = f"{sentence(rng.randint(0, 3))} {' '.join(base[a:a + rng.randint(1, 12)])} {sentence(rng.randint(0, 3))}"
        else:
            reason = sentence(rng.randint(1, 12))
        if rng.random() < 0.3:
            reason = reason.upper() + " !!"
        assert copied(reason, shown) == _difflib_copied(reason, shown), (reason, shown)


def test_a_veto_reason_is_refused_short_or_copied_and_says_which():
    shown = [SAW, "refused: lr is in cooldown for 40 more steps"]
    assert "at least 4 words" in own_words_refusal("undo it", shown)
    assert "at least 4 words" in own_words_refusal(None, shown)
    refusal = own_words_refusal("  VAL_LOSS   plateaued 0.001 relative improvement over 100 points!", shown)
    assert refusal and "not copied" in refusal and "val_loss plateaued" in refusal  # names what it repeats
    assert own_words_refusal("lr is in cooldown for 40 more steps", shown)  # a refusal, parroted
    assert own_words_refusal(OWN, shown) is None


def test_hostile_reasons_cost_bounded_work():
    shown = [f"{SAW} #{i} " + "é" * 1500 for i in range(200)]  # the most texts compared, each long
    hostile: list[Any] = [
        "x" * 5_000_000,  # huge
        ("ǅİﬃ\u0301\u200b" * 200_000) + SAW,  # odd unicode (case folding that grows, joiners, combining marks)
        " ".join(["val_loss plateaued"] * 100_000),  # a shown phrase, repeated
        "!" * 2_000_000 + OWN,  # punctuation the normaliser collapses
        {"a": [[[[["nested"]]]]]},  # not a string at all: no words
        12345,
    ]
    for reason in hostile:
        start = time.perf_counter()
        own_words_refusal(reason, shown)
        assert time.perf_counter() - start < 2.0, repr(reason)[:60]
    assert own_words_refusal({"a": [[SAW]]}, shown) is not None  # no words of its own
    # Only the first MAX_COMPARED normalised characters are compared: a copy after them is not seen.
    assert copied("q " * MAX_COMPARED + SAW, [SAW]) is False


# ---------------------------------------------------------------------- the judge, over a record
LR = {"key": "lr", "type": "log_float", "value": 0.025, "min": 1e-6, "max": 10.0, "last_change_step": 100}


def _entry(seq: int, step: int, source: str, actor: str, lr: tuple[float, float], module: str = "opt",
           op: str = "set_params", reason: str = RULE_REASON) -> dict[str, Any]:
    return {"seq": seq, "step": step, "module": module, "op": op, "source": source, "actor": actor,
            "decision": "applied", "reason": reason, "params": {"lr": lr[1]},
            "payload": {"lr": {"old": lr[0], "new": lr[1]}}}


def _view(ledger: list[dict[str, Any]], step: int = 150, alerts: tuple[dict[str, Any], ...] = ()) -> View:
    record = record_of(ledger, list(alerts))
    return View(code=None, step=step, groups=frozenset({"opt"}), knob=lambda m, k: dict(LR) if k == "lr" else None,
                recent=lambda: record)


def _op(lr: float, reason: str, source: str = "agent", **extra: Any) -> Any:
    op = parse_command(make_command("opt", "set_params", {"lr": lr}, source=source, actor="mcp", reason=reason))
    op.extra.update(extra)
    return op


def test_moving_back_a_recent_protective_change_is_a_veto():
    cut = [_entry(1, 100, "rule", "plateau", (0.05, 0.025))]
    refusal = judge(_op(0.05, SAW), "agent", _view(cut))
    assert refusal is not None and refusal.reason.startswith("a veto of the plateau rule's lr change 0.05 -> 0.025")
    assert judge(_op(0.05, OWN), "agent", _view(cut)) is None
    assert judge(_op(0.0125, SAW), "agent", _view(cut)) is None  # more of the same: no veto
    # Past the window, the knob is the model's to move again.
    assert judge(_op(0.05, SAW), "agent", _view(cut, step=100 + VETO_WINDOW_STEPS + 1)) is None
    # A person changed lr since: they decided the knob, the rule's change no longer stands alone.
    person = _entry(2, 120, "human", "ana", (0.025, 0.02), reason="my call")
    assert judge(_op(0.05, SAW), "agent", _view([*cut, person])) is None
    # A change that is not protective (the rules' finish, an agent's own) is no veto.
    for source, actor in (("rule", "finish"), ("agent", "llm"), ("tune", "tune")):
        assert judge(_op(0.05, "x y"), "agent", _view([_entry(1, 100, source, actor, (0.05, 0.025))])) is None


def test_the_rescues_cut_is_protective_and_its_alert_is_shown():
    rescue = _entry(1, 100, "rule", "rescue", (0.05, 0.025), module="rescue", op="rollback",
                    reason="rescue: loss is non-finite (nan); roll back to step 80 and cut lr")
    alert = {"kind": "rescue", "message": "rescue: loss 9.1 above the run's level for 3 steps; roll back to step 80"}
    view = _view([rescue], alerts=(alert,))
    refusal = judge(_op(0.05, "loss 9.1 above the run's level for 3 steps"), "agent", view)
    assert refusal is not None and "the rescue's lr change" in refusal.reason and "not copied" in refusal.reason
    assert judge(_op(0.05, OWN), "agent", view) is None


def test_who_is_held_to_it():
    cut = [_entry(1, 100, "rule", "plateau", (0.05, 0.025))]
    assert judge(_op(0.05, "back", source="human"), "human", _view(cut)) is None  # a person says what they like
    # A model's proposal a person approved is the person's decision.
    assert judge(_op(0.05, SAW, approved_by="ana"), "agent", _view(cut)) is None
    # The rules and tune write their reasons from templates: they are the floor, not held to it.
    assert judge(_op(0.05, RULE_REASON, source="rule"), "rule", _view(cut)) is None
    assert judge(_op(0.05, RULE_REASON, source="tune"), "tune", _view(cut)) is None
    # No record at hand (a view built by hand, a distributed run): not judged here.
    assert judge(_op(0.05, SAW), "agent", View(code=None, step=150, groups=frozenset({"opt"}),
                                                  knob=lambda m, k: dict(LR))) is None


# ---------------------------------------------------------------------- a real kernel, a real loop
def _plateau_cut(loop: Loop) -> dict[str, Any]:
    """The plateau rule's cut, as the rules autopilot sends it (source rule, actor the rule)."""
    lr = loop.opt.param_groups[0]["lr"]
    cmd = loop.send("opt", "set_params", {"lr": lr / 2}, source="rule", actor="plateau", reason=RULE_REASON)
    loop.run(12)  # past the guard's cooldown of the knob
    loop.kernel.publish_status()  # the step the tool surface judges at
    entry = loop.decision(cmd)
    assert entry["decision"] == "applied"
    return entry


@pytest.fixture
def loop(run_dir: Path):
    lp = Loop(run_dir, lr=0.05, checkpoint_every=2)
    lp.run(12)
    yield lp
    lp.close()


def test_an_external_clients_copied_veto_is_refused_and_recorded_its_own_applied(loop: Loop):
    assert loop.kernel.recent.reads == 0  # plain steps never read the run's record
    _plateau_cut(loop)
    assert loop.kernel.recent.reads == 0  # nor does a rule's op
    mcp = HotcbTools(loop.run_dir, source="agent", actor="mcp", wait_s=0)
    # Through the tool surface (as `hotcb mcp` serves it): refused early, recorded by the kernel.
    with pytest.raises(ToolError, match="a veto of the plateau rule's lr change 0.05 -> 0.025"):
        mcp.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.05}, "reason": RULE_REASON})
    # A line written straight into the commands file: the kernel's own judge refuses it.
    raw = loop.send("opt", "set_params", {"lr": 0.05}, source="agent", actor="mcp", reason=SAW.upper())
    loop.run(1)
    refused = [e for e in loop.ledger() if e["source"] == "agent"]
    assert [e["decision"] for e in refused] == ["rejected", "rejected"] and refused[1]["cmd_id"] == raw
    for e in refused:
        assert "a veto of the plateau rule's lr change" in e["error"] and "not copied" in e["error"]
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(0.025)
    # Its own words: applied, and lr is back.
    out = mcp.call("apply_op", {"module": "opt", "op": "set_params", "params": {"lr": 0.05}, "reason": OWN})
    loop.run(1)
    assert loop.decision(out["cmd_id"])["decision"] == "applied"
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_short_veto_is_refused_even_with_no_text_to_copy(loop: Loop):
    _plateau_cut(loop)
    cmd = loop.send("opt", "set_params", {"lr": 0.04}, source="agent", actor="mcp", reason="raise lr")
    loop.run(1)
    assert "needs a reason in your own words (at least 4 words)" in loop.decision(cmd)["error"]


def test_a_veto_cannot_be_laundered_through_a_replay_the_model_starts(loop: Loop):
    _plateau_cut(loop)
    at = loop.step_no + 3
    write_recipe(loop.run_dir / "r.jsonl", [{"step": at, "module": "opt", "op": "set_params", "params": {"lr": 0.05},
                                             "reason": RULE_REASON}])
    cmd = loop.send("core", "freeze", {"mode": "replay", "recipe_path": "r.jsonl"}, source="agent", actor="mcp",
                    reason="replay the schedule that worked")
    loop.run(5)
    assert loop.decision(cmd)["decision"] == "applied"
    (entry,) = [e for e in loop.ledger() if e["source"] == "replay"]
    assert entry["acting_for"] == "agent" and entry["decision"] == "rejected"
    assert "a veto of the plateau rule's lr change" in entry["error"]
    assert loop.opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_a_person_is_never_refused_for_their_reason(loop: Loop):
    _plateau_cut(loop)
    cmd = loop.send("opt", "set_params", {"lr": 0.05}, source="human", actor="ana", reason=RULE_REASON)
    loop.run(1)
    assert loop.decision(cmd)["decision"] == "applied"
    cmd = loop.send("core", "rollback", {}, source="human", actor="ana", reason="x")
    loop.run(1)
    assert loop.decision(cmd)["decision"] == "applied"


def test_an_automated_rollback_needs_its_own_reason(run_dir: Path):
    loop = Loop(run_dir, lr=0.05, checkpoint_every=2)
    try:
        loop.run(10)
        refused = loop.send("opt", "set_params", {"lr": 5.0}, source="agent", actor="mcp", reason="try a big lr")
        loop.run(1)
        refusal = loop.decision(refused)["error"]  # the guard's ratio limit: a text the run showed
        loop.nan_loss = True
        loop.run(2)
        assert loop.kernel.view().run_verdict not in ("healthy", "warming")
        short = loop.send("core", "rollback", {}, source="agent", actor="mcp", reason="roll back")
        parrot = loop.send("rescue", "rollback", {}, source="agent", actor="mcp", reason=f"refused: {refusal}")
        loop.run(1)
        assert "a rollback by agent needs a reason in your own words" in loop.decision(short)["error"]
        assert "a rollback by agent needs a reason of your own, not copied" in loop.decision(parrot)["error"]
        own = loop.send("core", "rollback", {}, source="agent", actor="mcp",
                        reason="the loss went non-finite two steps ago; the last snapshot was fine")
        loop.run(1)
        assert loop.decision(own)["decision"] == "applied"
    finally:
        loop.close()


def test_the_rescues_cut_vetoed_with_its_alerts_words_is_refused(run_dir: Path):
    loop = Loop(run_dir, lr=0.05)
    try:
        rescue_of(loop.kernel).configure(enabled=True, probe=False)
        loop.run(60)
        loop.nan_loss = True
        loop.step()  # the rescue rolls back and cuts lr, with an alert
        loop.nan_loss = False
        loop.run(12)
        (alert,) = [a for a in read_all(loop.run_dir / "hotcb.alerts.jsonl") if a.get("kind") == "rescue"]
        lr = loop.opt.param_groups[0]["lr"]
        cmd = loop.send("opt", "set_params", {"lr": lr * 2}, source="agent", actor="mcp", reason=alert["message"])
        loop.run(1)
        e = loop.decision(cmd)
        assert e["decision"] == "rejected" and "a veto of the rescue's lr change" in e["error"]
        assert loop.opt.param_groups[0]["lr"] == pytest.approx(lr)
    finally:
        loop.close()


def test_the_record_read_is_bounded_by_the_files_tails(loop: Loop):
    """A long run's ledger and a flood of alerts: only their tails are read, and an op is judged
    in bounded time; the rule's cut, just behind the flood in the ledger, is still seen."""
    for i in range(5_000):
        append_line(loop.run_dir / "hotcb.alerts.jsonl", {"kind": "x", "message": f"alert {i} " + "z" * 300})
    _plateau_cut(loop)
    start = time.perf_counter()
    cmd = loop.send("opt", "set_params", {"lr": 0.05}, source="agent", actor="mcp", reason=RULE_REASON)
    loop.run(1)
    assert time.perf_counter() - start < 2.0
    assert loop.decision(cmd)["decision"] == "rejected"
