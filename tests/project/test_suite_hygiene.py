"""The suite ends when a test times out: no spawned worker outlives its test and keeps pytest
from exiting (the timeout fails the test in-process, the helpers reap what it started)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

HUNG = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path

    sys.path.insert(0, {root!r})
    from tests.support.spawn import spawn

    def worker(rank, out):
        Path(out, f"pid{{rank}}").write_text(str(os.getpid()))
        time.sleep(3600)  # a rank stuck in a collective

    def test_hangs(tmp_path):
        spawn(worker, ({out!r},), nprocs=2)
''')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_timed_out_test_with_spawned_workers_does_not_hang_the_suite(tmp_path: Path) -> None:
    out = tmp_path / "pids"
    out.mkdir()
    test = tmp_path / "test_hung.py"
    test.write_text(HUNG.format(root=str(ROOT), out=str(out)))
    # the project's own settings (timeout method included), a short timeout for the hung test
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                        "-c", str(ROOT / "pyproject.toml"), "--timeout", "20", str(test)],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 1 and "Timeout" in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-2000:]
    pids = [int(p.read_text()) for p in out.iterdir()]
    assert len(pids) == 2 and not any(_alive(p) for p in pids)
