"""``hotcb.yaml``: the desired state of a run, written by a person, re-applied on change.

```yaml
knobs:   {lr: 0.001, aux_w: 0.5}         # or grouped: {opt: {lr: 0.001}, loss: {aux_w: 0.5}}
callbacks:
  timing: {target: {kind: module, path: hotcb.callbacks.timing, symbol: TimingCallback},
           enabled: true, params: {every: 10}}
freeze: off
```
The kernel turns the differences from the live state into ops with ``source: yaml``.
"""

from __future__ import annotations

from typing import Any

import yaml

from .freeze import MODES
from .ops import CallbackTarget, CommandError


class DesiredStateError(ValueError):
    pass


def parse_desired(text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise DesiredStateError(f"hotcb.yaml is not valid YAML: {e}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise DesiredStateError("hotcb.yaml must be a mapping")
    unknown = set(doc) - {"knobs", "callbacks", "freeze"}
    if unknown:
        raise DesiredStateError(f"hotcb.yaml has unknown sections: {sorted(unknown)}")
    knobs = doc.get("knobs") or {}
    if not isinstance(knobs, dict):
        raise DesiredStateError("knobs must be a mapping")
    cbs = doc.get("callbacks") or {}
    if not isinstance(cbs, dict):
        raise DesiredStateError("callbacks must be a mapping of id -> spec")
    for cb_id, spec in cbs.items():
        if not isinstance(spec, dict):
            raise DesiredStateError(f"callback {cb_id}: spec must be a mapping")
        if spec.get("target") is not None:
            try:
                CallbackTarget.from_dict(spec["target"])
            except CommandError as e:
                raise DesiredStateError(f"callback {cb_id}: {e}") from None
        if not isinstance(spec.get("params", {}), dict):
            raise DesiredStateError(f"callback {cb_id}: params must be a mapping")
    freeze = doc.get("freeze")
    if freeze is False:
        freeze = "off"  # YAML reads a bare `off` as false
    if freeze is not None and freeze not in MODES:
        raise DesiredStateError(f"freeze must be one of {MODES}")
    return {"knobs": knobs, "callbacks": cbs, "freeze": freeze}


def flatten_knobs(knobs: dict[str, Any], groups: set[str]) -> dict[tuple[str | None, str], Any]:
    """``{(group or None, key): value}``; a nested mapping under a known group name is grouped."""
    out: dict[tuple[str | None, str], Any] = {}
    for k, v in knobs.items():
        if k in groups and isinstance(v, dict):
            for kk, vv in v.items():
                out[(k, kk)] = vv
        else:
            out[(None, k)] = v
    return out
