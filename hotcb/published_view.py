"""The run as its kernel last published it (``hotcb.actuators.json``, ``hotcb.status.json``,
``hotcb.schedule.json``), as a judge ``View``: what a process other than the kernel -- the tool
surface, ``hotcb recipe validate`` -- asks the judge with, before the kernel judges again."""

from __future__ import annotations

from typing import Any

from .guard import GuardConfig
from .jsonl import read_json
from .judge import CodePolicy, View
from .recent_record import RecentRecordReader
from .records import StatusRecord
from .rundir import RunDir
from .vocabulary import Source


def _doc(path: Any) -> dict[str, Any]:
    doc = read_json(path)
    return doc if isinstance(doc, dict) else {}


def published_view(run: RunDir) -> View:
    """The judge's view of ``run`` from its published files. Before a training process has
    published its knobs, ``groups`` is None (knob ops are left to the kernel) and the code policy
    is the built-ins and the run directory."""
    doc, status = _doc(run.actuators), StatusRecord.from_json(_doc(run.status))
    descs = {(a.get("module"), a.get("key")): a for a in doc.get("actuators", []) if isinstance(a, dict)}
    pending = _doc(run.schedule).get("pending") or []
    sources = {p.get("cmd_id"): p.get("source") for p in pending if isinstance(p, dict)}
    return View(
        code=CodePolicy.from_dict(run.root, doc.get("code_policy")),
        guard=GuardConfig.from_dict(doc.get("guard")),
        freeze_mode=status.freeze_mode or "off",
        freeze_source=status.freeze_source or Source.HUMAN,
        step=status.step,
        locks=doc.get("locks") or {},
        groups=frozenset(m for (m, _k) in descs if isinstance(m, str)) if doc else None,
        knob=lambda module, key: descs.get((module, key)),
        knob_keys=lambda module: [k for (m, k) in descs if m == module and isinstance(k, str)],
        scheduled_source=sources.get,
        run_verdict=status.run_verdict,
        recent=RecentRecordReader(run.root),  # read only if an op the reason rule covers is judged
    )
