"""The LLM autopilot: an OpenAI-compatible chat-completions tool-calling loop over the tool surface.

This file is the loop: each tick the rules sense under the model (``rules_floor``) and a wake
starts when one is due (``wake_schedule``); a wake opens with the system prompt and the run digest
(``wake_prompt``, ``digest``) and runs bounded rounds of request, reply and tool calls
(``conversation``) within its deadline (``wake_clock``). Nothing raises out of ``tick`` or ``wake``.

The model sees the tool surface's own schemas, narrowed to what it may do (``offered_tools``), and
every call it makes is checked and sent by ``tool_call.ToolCaller`` through ``HotcbTools.call``
(source ``agent``, actor the model name): the guard judges it and the kernel records it. Calls
come natively or written as JSON text (``replies``); both are validated alike and the way each
came is counted. Anything malformed is refused, told to the model, and recorded.

Failures (``chat``, ``api_health``): an outage falls back to the rules until a probe succeeds; a
model error (output the server could not parse, a tool call that cannot be read) is retried once
with a corrective message and, if it fails again, that wake falls back to the rules, recorded as a
model error, never as an outage. Every wake is accounted (``stats``): LLM wakes, fallbacks and why.

Safety floor: the rules' protective actions (non-finite, divergence, plateau, and the kernel's
rescue) act at once, exactly as in ``auto``; while the model is out (down, slower than the wake
deadline, out of budget) every rule acts. The model acts above them: the digest tells it what the
rules did and would do; it endorses, proposes more, overrides, or vetoes a protective change with
a reason of its own (``stance``); silence is never a veto.

Wakes: with ``background=True`` (the autopilot process) a wake runs in a worker thread, so the
rules keep ticking while the model thinks; past the wake deadline (every request and tool call
together) the wake is an outage (alert, rules, and the recovery noticed when a later wake
finishes in time). ``progress()`` says what a running wake is doing. A wake ends when the run
ends. Every tool call the model makes is recorded in the AI state (``memory.AiMemory``: usage, API
health, notes, refusals, calls, stats), kept in ``hotcb.ai.state.json`` through ``save_ai_state``,
redacted: no key or credential is ever written.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hotcb.agent.llm import offered_tools
from hotcb.agent.llm.api_health import ApiHealth
from hotcb.agent.llm.budget import Budget
from hotcb.agent.llm.chat import ChatApi, ModelOutputError
from hotcb.agent.llm.conversation import Conversation
from hotcb.agent.llm.env_number import env_number
from hotcb.agent.llm.memory import AiMemory
from hotcb.agent.llm.replies import ParsedCall, TextCallError, parse_reply
from hotcb.agent.llm.rules_floor import RulesFloor
from hotcb.agent.llm.stance import Stances
from hotcb.agent.llm.tool_call import AI_TOOLS, ToolCaller, canonical
from hotcb.agent.llm.untrusted import redact_tree, redact_url, unechoed
from hotcb.agent.llm.wake_clock import WakeClock
from hotcb.agent.llm.wake_prompt import CORRECTIVE, opening
from hotcb.agent.llm.wake_schedule import WakeSchedule
from hotcb.agent.llm.wake_worker import WakeWorker
from hotcb.agent.rules.config import RulesConfig
from hotcb.agent.rules.sensors import RulesAutopilot
from hotcb.mcp_server.catalog import TOOLS
from hotcb.mcp_server.tools_alerts import ListAlertsInput
from hotcb.mcp_server.tools_protocol import AutopilotTools

log = logging.getLogger("hotcb.agent.llm.tool_loop")

_KNOWN = set(AI_TOOLS) | set(TOOLS)  # tool names: text that names one is read as an attempted call


class LLMAutopilot:
    """``LLMAutopilot(HotcbTools(run, source="agent", actor=model), api_key=..., model=...).tick()``."""

    # complexity: the LLM autopilot's public keyword options (CLI flags and env map onto them one to one)
    def __init__(self, tools: AutopilotTools, *, api_key: str | None, base_url: str | None = None, model: str = "gpt-4o-mini",  # noqa: PLR0913
                 mode: str = "ai_auto", max_tool_calls: int = 6, max_rounds: int | None = None,
                 timeout_s: float | None = None, cadence_steps: int | None = None, min_gap_steps: int | None = None,
                 retries: int = 3,
                 retry_wait_s: float = 1.0, probe_s: float = 60.0, budget: Budget | None = None,
                 rules: RulesConfig | None = None, fallback: RulesAutopilot | None = None, client: Any = None,
                 rule_tools: AutopilotTools | None = None, sensor: RulesAutopilot | None = None, max_completion_tokens: int | None = None,
                 wake_deadline_s: float | None = None, background: bool = False):
        if mode not in ("ai_auto", "ai_suggest"):
            raise ValueError("LLM mode is ai_auto or ai_suggest")
        self.tools = tools
        self.model = model
        self.mode = mode
        self.base_url = base_url
        self.max_tool_calls = max_tool_calls
        self.max_rounds = max_rounds or env_number("HOTCB_AI_MAX_ROUNDS", 4, int)
        self.timeout_s = timeout_s or env_number("HOTCB_AI_TIMEOUT", 60.0)
        self.schedule = WakeSchedule(
            cadence_steps or env_number("HOTCB_AI_CADENCE_STEPS", 200, int),
            min_gap_steps if min_gap_steps is not None else env_number("HOTCB_AI_MIN_GAP_STEPS", 0, int))
        self.clock = WakeClock(wake_deadline_s or env_number("HOTCB_AI_WAKE_DEADLINE", 300.0), on_late=self._went_late)
        self.background = background
        self.budget = budget or Budget()
        self.api = ChatApi(model=model, api_key=api_key, base_url=base_url, budget=self.budget,
                           timeout_s=self.timeout_s, retries=retries, retry_wait_s=retry_wait_s, client=client,
                           max_completion_tokens=max_completion_tokens or env_number("HOTCB_AI_MAX_COMPLETION", 0, int))
        self.floor = RulesFloor(tools, mode=mode, cfg=rules, rule_tools=rule_tools, sensor=sensor, fallback=fallback)
        saved = tools.load_ai_state()
        self.memory = AiMemory(saved, model=model, base_url=redact_url(base_url), mode=mode)
        if self.memory.same_model:
            self.budget.restore(saved.get("usage"))  # a restarted autopilot keeps its spend
        self.state = self.memory.state
        self.caller = ToolCaller(tools, self.memory, mode=mode, scrub=self.api.scrub, run_over=self._run_over)
        self.health = ApiHealth(self.memory, model=model, probe_s=probe_s, alert=self._alert)
        self.tool_specs = offered_tools.specs()
        self._rescue = False  # the kernel has the rescue module (read at each wake)
        self.worker = WakeWorker()
        self.last_result: dict[str, Any] = {}

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Any:
        return self.api.client

    def usage(self) -> dict[str, Any]:
        return self.budget.usage()

    @property
    def stats(self) -> dict[str, Any]:
        return self.memory.stats

    def save(self) -> None:
        self.state.update(usage=self.budget.usage(), budget=self.budget.limits(),
                          budget_exhausted=self.budget.exhausted() is not None)
        try:
            # Redacted at the boundary: nothing the API said (it may echo headers) carries a secret out.
            self.tools.save_ai_state(redact_tree(self.state, self.api.secrets))
        except Exception as e:
            log.warning("could not save the AI state: %s", self.api.scrub(str(e)))

    def _alert(self, kind: str, message: str, severity: str = "warning") -> None:
        try:
            self.tools.record_alert(rule=f"autopilot_{kind}", kind=kind, message=self.api.scrub(message),
                                    severity=severity)
        except Exception as e:
            log.warning("could not record alert: %s", e)

    def _fall_back(self, why: str) -> None:
        self.stats["fallbacks"][why] = self.stats["fallbacks"].get(why, 0) + 1
        self.floor.act_all()

    def model_out(self) -> bool:
        """The model cannot act now (down or too slow, within the probe interval; budget spent):
        every rule acts, as in ``auto``."""
        return bool(self.budget.exhausted()) or self.health.down() or self.clock.is_late

    def _run_over(self) -> str | None:
        try:
            st = self.tools.get_status()
        except Exception:
            return None
        if st.liveness in ("stopped", "dead"):
            return f"training is {st.liveness}"
        if st.stop_requested:
            return "training was asked to stop"
        return None

    # ------------------------------------------------------------------ scheduling
    def tick(self) -> dict[str, Any]:
        """One pass: the rules sense (their NaN safety net acts at once); the model wakes on their
        findings, on new alerts, or every ``cadence_steps``, never twice within ``min_gap_steps``
        (what arrives in between is kept for the next wake). Never raises."""
        try:
            self.schedule.found(self.floor.sense(self.model_out))
            self.schedule.alerted(self.tools.list_alerts(
                ListAlertsInput(since_ts=self.schedule.seen_alert_ts, last=20)).alerts)
            step = self.tools.status_doc().get("step")
        except Exception as e:
            log.warning("LLM tick failed: %s: %s", type(e).__name__, self.api.scrub(str(e)))
            return {"outcome": "error", "error": self.api.scrub(str(e))}
        if self.worker.running():  # notice its deadline
            self.clock.late()
            return {**self.progress(), "wake": "running"}
        if step is None:
            return {"waiting": "no training step yet"}
        due = self.schedule.due(step)
        if due is None:
            return {}
        if not self.background:
            return self.wake(due.why, alerts=due.alerts, findings=due.findings)
        self.worker.start(self.wake, (due.why, due.alerts, due.findings))
        return {"wake": "started", "why": due.why}

    def busy(self) -> bool:
        return self.worker.busy()

    def join(self, timeout: float | None = None) -> None:
        """Wait for a wake running in the worker (tests, and a clean exit)."""
        self.worker.join(timeout)

    def progress(self) -> dict[str, Any]:
        """What the wake in progress is doing: {} when none runs."""
        return self.clock.progress(self.budget.usage().get("tokens", 0))

    def _went_late(self) -> None:
        """The wake in progress ran past the wake deadline: an outage (noticed once, by the clock)."""
        self.stats["timed_out"] += 1
        self.health.went_down(f"{self.model} did not finish a wake within the {self.clock.deadline_s:g} s wake "
                              "deadline (the server answers, but slower than that)")
        self.save()

    # ------------------------------------------------------------------ one wake
    def wake(self, why: str = "cadence", alerts: list[dict[str, Any]] | None = None,
             findings: list[Any] | None = None) -> dict[str, Any]:
        """One wake: a bounded tool-calling conversation, or the rules while the API is down, the
        budget is spent or the model's output is unusable. Returns what happened. Never raises."""
        self.clock.start(self.stats["wakes"] + 1, self.budget.usage().get("tokens", 0))
        try:
            out = self._wake(why, alerts or [], findings or [])
        except Exception as e:  # the autopilot never takes training down
            err = self.api.scrub(f"{type(e).__name__}: {e}")[:300]
            log.warning("LLM wake failed: %s", err)
            self.memory.api_also(error=err)
            self.save()
            out = {"outcome": "error", "error": err}
        finally:
            self.clock.end()
        self.last_result = out
        return out

    def _wake(self, why: str, alerts: list[dict[str, Any]], findings: list[Any]) -> dict[str, Any]:
        spent = self.budget.exhausted()
        if spent:
            if not self.state.get("budget_alerted"):
                self.state["budget_alerted"] = True
                self._alert("budget", f"LLM autopilot stopped calling {self.model}: {spent}; rules run instead")
            self.memory.api_also(fallback="rules (budget spent)")
            self._fall_back("budget")
            self.save()
            return {"outcome": "budget_exhausted", "reason": spent}
        if self.health.down():
            self._fall_back("api_down")  # the API is down: rules keep the run safe until the next probe
            self.save()
            return {"outcome": "fallback"}
        over = self._run_over()
        if over:
            return {"outcome": "run_over", "reason": over}
        self.memory.woke()
        describe = self.tools.describe_actuators().model_dump(mode="json")  # as the model reads it
        snapshots = len(self.tools.get_status().snapshots)
        self._rescue = isinstance(self.tools.status_doc().get("rescue"), dict)
        stances = Stances(findings, describe, self.stats,
                          shown=[str(a.get("message") or "") for a in alerts] +
                          [str(r.get("detail") or "") for r in self.memory.refusals()])
        messages = opening(self.tools, self.memory, mode=self.mode, why=why, alerts=alerts, stances=stances,
                           describe=describe)
        knobs = {(a.get("module"), a.get("key")): a.get("value") for a in describe.get("actuators", [])}
        out = self._converse(Conversation(messages, stances, knobs, snapshots))
        if out["outcome"] == "ok":
            stances.silent()  # the rules' actions stand; nothing is vetoed by saying nothing
        self.save()
        return out

    def _converse(self, w: Conversation) -> dict[str, Any]:
        """One wake's rounds, in the order things happen: budget, deadline, run over, the model's
        reply, its tool calls; the wake ends on a reply without calls, the call limit or a loop."""
        for n in range(self.max_rounds):
            if self.budget.exhausted():
                break
            if self.clock.late():
                return self._timed_out(w)
            over = self._run_over()
            if over:
                return w.result("run_over", reason=over)
            self.clock.waiting(n + 1, w.messages)
            reply = self._ask(w)
            if reply is None:  # told what was wrong: asked again
                continue
            if isinstance(reply, dict):  # the wake ended here
                return reply
            calls, text, msg = reply
            if not calls:
                if text:
                    self._note(text)
                break
            self._answer(w, calls, msg)
            if w.calls_made >= self.max_tool_calls or w.looping:
                break
        if w.answered:
            self.stats["llm_wakes"] += 1
        return w.result("ok")

    def _ask(self, w: Conversation) -> tuple[list[ParsedCall], str, Any] | dict[str, Any] | None:
        """One request: the reply's calls, text and message; the wake's end (a result) when the API
        is out, the answer came past the deadline or the output was unusable twice; None when a
        corrective message was added (ask again)."""
        msg: Any = None
        try:
            resp = self.api.complete(w.messages, self.tool_specs)
            if self.clock.late():  # an answer after the deadline is not an answer: the rules acted
                return self._timed_out(w)
            if resp is None:
                return self._outage(w)
            self.health.answered(self.api.attempts)
            w.answered = True
            msg = resp.choices[0].message if getattr(resp, "choices", None) else None
            if msg is None:
                return [], "", None
            calls, text = parse_reply(msg, _KNOWN)
            return calls, text, msg
        except (ModelOutputError, TextCallError) as e:
            return self._unusable(w, e, msg)

    def _unusable(self, w: Conversation, e: Exception, msg: Any) -> dict[str, Any] | None:
        """Output that cannot be used: corrected once; the second time the rules act for this wake,
        recorded as a model error, never as an outage (the API answered)."""
        self.stats["model_errors"] += 1
        detail = self.api.scrub(str(e))[:300]
        if not w.corrected:
            echoed = msg.content if isinstance(e, TextCallError) and msg is not None else None
            w.correct(CORRECTIVE.format(why=detail), echoed)
            return None
        self._alert("model_error", f"{self.model}'s output was unusable twice this wake ({detail}); "
                                   "the rules act for this wake (not an outage: the API answered)")
        self.memory.api(state="ok", since=time.time(), model_error=detail)
        self._fall_back("model_error")
        return w.result("model_error", error=detail)

    def _answer(self, w: Conversation, calls: list[ParsedCall], msg: Any) -> None:
        """Run the reply's tool calls, each answered to the model and recorded."""
        self.clock.doing("running its tool calls")
        for c in calls:
            self.stats["tool_calls_" + c.via] += 1
        w.calls(calls, msg.content)
        for c in calls:
            result = self._one_call(w, c)
            self._record_call(c, result)
            w.tool_result(c, result)

    def _one_call(self, w: Conversation, c: ParsedCall) -> str:
        """One tool call, unless the wake's limit, a repeat of a refused call or the deadline stops it."""
        key = c.name + ":" + canonical(c.arguments)
        if w.calls_made >= self.max_tool_calls:
            return self.caller.refuse("limit", c.name, f"at most {self.max_tool_calls} tool calls per wake")
        if key in w.refused:
            w.looping = True
            return self.caller.refuse("repeated", c.name, "this exact call was refused already this wake; the wake ends")
        if self.clock.late():
            return self.caller.refuse("late", c.name, "the wake ran past its deadline; the rules act")
        w.calls_made += 1
        result = self.caller.run(c.name, c.arguments, w.actions, w.knobs, w.stances, w.snapshots, rescue=self._rescue)
        if result.startswith(("refused", "not sent")):
            w.refused.add(key)
        return result

    def _outage(self, w: Conversation) -> dict[str, Any]:
        self.health.went_down(f"unreachable: {self.api.error}")
        self._fall_back("api_down")
        self.save()
        return w.result("api_down", error=self.api.error)

    def _timed_out(self, w: Conversation) -> dict[str, Any]:
        self._fall_back("too_slow")
        self.save()
        return w.result("timed_out", deadline_s=self.clock.deadline_s)

    def _record_call(self, c: ParsedCall, result: str) -> None:
        """Every model tool call in the memory: its arguments and what became of it."""
        self.memory.called(tool=str(c.name), via=c.via, arguments=self.api.scrub(str(c.arguments or "")),
                           result=self.api.scrub(result))
        self.save()  # seen as it happens (the dashboard, the autopilot tool), not only when the wake ends

    def _note(self, text: str) -> None:
        text = unechoed(text)
        step = None
        try:
            step = self.tools.status_doc().get("step")
        except Exception:
            pass
        self.memory.noted(text, step)
