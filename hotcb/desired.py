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

import hashlib
import os
import threading
from typing import Any

import yaml

from .errors import InvalidInput
from .freeze import MODES
from .jsonl import open_nofollow
from .ops import CallbackTarget, CommandError

# A desired-state file is a few lines; anything near this is a mistake or an attack (a 4 MB file
# took seconds of a training step to parse). Aliases are refused outright: a 500-byte "billion
# laughs" file expands to hundreds of MB.
MAX_DESIRED_BYTES = 64 << 10
INLINE_DESIRED_BYTES = 1 << 10  # a file this small is parsed at the step (a few ms at most); larger ones off it
MAX_NODES = 20_000


class DesiredStateError(InvalidInput, ValueError):
    """A desired-state file that cannot be read as one (syntax, size, shape)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with a node budget."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise DesiredStateError("hotcb.yaml uses a YAML alias (*name); aliases are not allowed")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise DesiredStateError(f"hotcb.yaml has more than {MAX_NODES} nodes")
        return super().compose_node(parent, index)


def parse_desired(text: str) -> dict[str, Any]:
    """``{"knobs", "callbacks", "freeze"}`` of a desired-state file; DesiredStateError naming what is wrong."""
    doc = _load(text)
    unknown = set(doc) - {"knobs", "callbacks", "freeze"}
    if unknown:
        raise DesiredStateError(f"hotcb.yaml has unknown sections: {sorted(unknown)}")
    knobs = doc.get("knobs") or {}
    if not isinstance(knobs, dict):
        raise DesiredStateError("knobs must be a mapping")
    return {"knobs": knobs, "callbacks": _callbacks(doc.get("callbacks") or {}), "freeze": _freeze(doc.get("freeze"))}


def _load(text: str) -> dict[str, Any]:
    """The file as a mapping, read by the bounded loader (size, aliases, nodes, depth)."""
    if len(text) > MAX_DESIRED_BYTES:
        raise DesiredStateError(f"hotcb.yaml is larger than {MAX_DESIRED_BYTES >> 10} KiB")
    try:
        loader = _BoundedLoader(text)
        try:
            doc = loader.get_single_data() if text.strip() else {}
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise DesiredStateError(f"hotcb.yaml is not valid YAML: {str(e)[:300]}") from None
    except RecursionError:
        raise DesiredStateError("hotcb.yaml is nested too deeply") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise DesiredStateError("hotcb.yaml must be a mapping")
    return doc


def _callbacks(cbs: Any) -> dict[str, Any]:
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
    return cbs


def _freeze(freeze: Any) -> str | None:
    if freeze is False:
        freeze = "off"  # YAML reads a bare `off` as false
    if freeze is not None and freeze not in MODES:
        raise DesiredStateError(f"freeze must be one of {MODES}")
    return freeze


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


def read_desired(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse ``hotcb.yaml``: ``{"digest", "doc"}`` or ``{"digest", "error"}``."""
    try:
        with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
            data = f.read(MAX_DESIRED_BYTES + 1)
    except OSError as e:
        return {"digest": f"unreadable-{hashlib.sha1(str(e).encode()).hexdigest()[:8]}",
                "error": f"hotcb.yaml cannot be read: {e}"}
    digest = hashlib.sha1(data).hexdigest()[:12]
    try:
        return {"digest": digest, "doc": parse_desired(data.decode("utf-8", "replace"))}
    except DesiredStateError as e:
        return {"digest": digest, "error": str(e)}


class BackgroundRead:
    """Runs a read off the training thread; the training thread only starts it and takes the
    result at a later step. A change seen while a read runs starts one more read after it."""

    def __init__(self, read: Any):
        self._read = read
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._result: Any = None

    def start(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        threading.Thread(target=self._run, name="hotcb-watched-read", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                result = self._read()
            except Exception as e:  # a reader bug must not kill the thread silently
                result = {"digest": "error", "error": f"{type(e).__name__}: {e}"}
            with self._lock:
                self._result = result
                if not self._again:
                    self._running = False
                    return
                self._again = False

    def take(self) -> Any:
        with self._lock:
            result, self._result = self._result, None
            return result

    @property
    def busy(self) -> bool:
        return self._running
