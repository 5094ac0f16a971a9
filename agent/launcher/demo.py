"""``hotcb demo``: a real model trains, a scheduled mishap hits it, the autopilot rescues it, and
the terminal and the dashboard show it as it happens.

The story, as the ledger tells it: a teammate's typo multiplies the learning rate (a scheduled
op, ``human/demo-mishap``, its reason says so); the loss jumps; the autopilot sees it and acts
(``rule/...`` or ``agent/...``: lowers lr, or rolls back to the last good snapshot). The terminal
shows a live line (step, loss, lr, autopilot actions) and, at the end, what the autopilot did.
The dashboard stays up after training ends until Ctrl-C (``--exit-when-done`` to leave at once).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from typing import Any

from hotcb.agent.launcher.progress import RunProgress
from hotcb.mcp_server.registry import ToolError
from hotcb.mcp_server.schemas import OpSpec
from hotcb.mcp_server.tools import HotcbTools
from hotcb.mcp_server.tools_protocol import Tools
from hotcb.mcp_server.tools_replay import ScheduleInput

from hotcb.vocabulary import Source

MISHAP_ACTOR = "demo-mishap"
MISHAP_FACTOR = 30.0  # lr x30: enough to blow the loss up, the kind of typo (3e-1 for 1e-2) that happens
DEMO_STEPS = {"classifier": 1200, "golden": 1500}


def mishap_step(max_steps: int) -> int:
    """Where the mishap strikes: a third of the way in (after the loss has settled, with a
    snapshot to return to and time left to recover)."""
    return max(3, max_steps // 3)


def schedule_mishap(tools: Tools, at_step: int, factor: float = MISHAP_FACTOR, wait_s: float = 120.0,
                    stop: threading.Event | None = None) -> str | None:
    """Schedule ``lr x factor`` at ``at_step`` once the run has published its knobs; a message
    saying what was scheduled (None if training never got that far or the op was refused)."""
    stop = stop or threading.Event()
    waited = 0.0
    while not stop.is_set() and waited < wait_s:
        knobs = {a.key: a for a in tools.describe_actuators().actuators}
        if "lr" in knobs:
            break
        stop.wait(0.2)
        waited += 0.2
    else:
        return None
    lr = knobs["lr"].value
    if not isinstance(lr, (int, float)):
        return None
    now = tools.get_status().step or 0
    at_step = max(at_step, now + 10)  # training may have raced past it: strike soon instead of late
    bad = float(lr) * factor
    try:
        tools.schedule_op(ScheduleInput(action="add", at_step=at_step, op=OpSpec(
            module=knobs["lr"].module, op="set_params", params={"lr": bad},
            reason=f"scheduled mishap: a typo sets lr to {bad:g} (x{factor:g} the starting {lr:g}); "
                   "watch the autopilot")))
    except ToolError as e:
        print(f"hotcb demo: the mishap could not be scheduled ({e}); the demo goes on without it", file=sys.stderr)
        return None
    return f"at step {at_step} a scheduled mishap sets lr to {bad:g} (x{factor:g} the starting {lr:g})"


def _until_interrupted(serve: Any) -> None:
    """Block until Ctrl-C, SIGTERM or the dashboard process ending."""
    done = threading.Event()

    def on_signal(*_: Any) -> None:
        done.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not done.is_set() and serve.poll() is None:
            done.wait(0.5)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_demo(args: argparse.Namespace, mode: str, mode_note: str | None, ai: Any, wait: Any) -> int:
    """The demo command; ``wait`` is the CLI's wait-for-training (Ctrl-C stops training cleanly)."""
    from hotcb.agent.launcher.launch import launch

    # A fresh run directory unless one was named: a demo must never resume (or litter) the
    # current directory, which is what the top-level --dir default "." would mean here.
    named = getattr(args, "dir", None)
    run_dir = named if named not in (None, ".") else tempfile.mkdtemp(prefix="hotcb-demo-")
    kind = "golden" if args.golden else "classifier"
    steps = args.max_steps or DEMO_STEPS[kind]
    h = launch(f"hotcb.demos:{kind}", run_dir, max_steps=steps, autopilot=mode, rules=args.rules, ai=ai,
               serve=not args.no_serve, port=args.port)
    print(f"hotcb demo: {'golden multi-task' if args.golden else 'CNN'} on synthetic images, run dir {h.run_dir}, "
          f"autopilot {mode}", file=sys.stderr)
    if mode_note:
        print(f"hotcb demo: {mode_note}", file=sys.stderr)
    if h.url:
        print(f"hotcb demo: dashboard at {h.url}", flush=True)
    stop = threading.Event()
    if not args.no_mishap:
        def mishap() -> None:
            try:
                teammate = HotcbTools(h.run_dir, source=Source.HUMAN, actor=MISHAP_ACTOR)
                msg = schedule_mishap(teammate, mishap_step(steps), stop=stop)
            except Exception as e:
                msg = f"no mishap this time ({type(e).__name__}: {e})"
            if msg:
                print(f"hotcb demo: {msg}", file=sys.stderr, flush=True)

        threading.Thread(target=mishap, name="hotcb-demo-mishap", daemon=True).start()
    progress = RunProgress(h.tools, out=sys.stdout, story_actors=(MISHAP_ACTOR,)).start()
    try:
        rc: int = wait(h, keep_dashboard=True)
    finally:
        stop.set()
        progress.stop()
    for line in progress.summary():
        print(f"hotcb demo: {line}", flush=True)
    print(f"hotcb demo: the whole story: hotcb ledger --dir {h.run_dir}", flush=True)
    if h.serve is not None and h.serve.poll() is None and not args.exit_when_done:
        print(f"hotcb demo: training done; the dashboard stays up at {h.url} -- press Ctrl-C to quit", flush=True)
        _until_interrupted(h.serve)
    h.close()
    return rc
