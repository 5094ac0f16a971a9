"""A ``hotcb demo`` killed with SIGKILL (no handler runs) takes its children with it: the
training process and the dashboard server exit on their own (the real CLI, real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support.proc import wait_for


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_demo_ends_its_trainer_and_dashboard(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTCB_AI_")}
    demo = subprocess.Popen([sys.executable, "-m", "hotcb.cli", "demo", "--dir", str(tmp_path / "run"),
                             "--max-steps", "200000", "--port", "0", "--no-mishap"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    children: list[psutil.Process] = []
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:  # the dashboard is up once its URL is printed
            seen.append(line)
            if "dashboard at http" in line:
                break
        else:
            raise AssertionError("demo ended early:\n" + "".join(seen[-40:]))
        children = psutil.Process(demo.pid).children(recursive=True)
        cmdlines = [" ".join(c.cmdline()) for c in children]
        assert any("hotcb.agent.launcher.trainproc" in c for c in cmdlines) and any(" serve " in c for c in cmdlines), cmdlines
        demo.send_signal(signal.SIGKILL)
        demo.wait()
        wait_for(lambda: not any(_alive(c) for c in children), 120, 0.2, "the demo's children to exit")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for c in children:
            if _alive(c):
                c.kill()


MIDDLE = """
import subprocess, sys, time
from hotcb.parent_watch import child_env
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=child_env())
print(child.pid, flush=True)
time.sleep(3600)
"""
CHILD = "from hotcb.parent_watch import watch_parent; import time; assert watch_parent(); time.sleep(3600)"


def test_a_child_watching_its_parent_exits_without_the_death_signal(tmp_path: Path) -> None:
    """The child's own watch alone (no PR_SET_PDEATHSIG: a parent that spawned from a thread)."""
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, CHILD], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert middle.stdout is not None
        child = psutil.Process(int(middle.stdout.readline()))
        assert _alive(child)
        middle.kill()
        middle.wait()
        wait_for(lambda: not _alive(child), 60, 0.1, "the child to exit")
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait()
        if child is not None and _alive(child):
            child.kill()
