"""Copies of state dicts for snapshots, tensors on CPU, into reused buffers where they fit.

A snapshot is taken every ``snapshot_every`` steps. A fresh copy of a large tensor (from
``MIN_REUSE_BYTES``; the allocator maps it afresh and unmaps it when freed) costs mostly page
faults, more than the copy itself: a 17M-parameter MLP with momentum, 134 MB a snapshot, took
~130 ms a snapshot, ~25 ms written into reused buffers. So the tensors of the snapshots that a
new one evicts are handed in as ``Spares`` and the new copies of large tensors are written into
them (``copy_``) where shape, strides and dtype match: the same values as a fresh copy, no new
pages. Smaller tensors are copied afresh: the allocator's free lists serve them as fast, and
after a copy that met no large tensor the next take plans no reuse at all (``Spares.asked``).
The snapshot they came from is gone from the ring before they are written to
(``hotcb.checkpoint.Snapshots.take``), and a restore loads a deep copy of a snapshot's state,
never its tensors, so no model or optimizer holds one.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

# Below this a fresh copy comes from the allocator's free lists as fast as a reused buffer (no
# new pages); above it (the allocator maps large blocks afresh) reuse saves the page faults.
MIN_REUSE_BYTES = 1 << 20
_ATOMS = (int, float, complex, str, bytes, bool, type(None))  # immutable: kept as they are, not copied


class Spares:
    """CPU tensors free to be overwritten, by (shape, strides, dtype). The states handed in are
    looked through at the first ``take`` (a model without a large tensor never asks)."""

    def __init__(self) -> None:
        self._states: list[Any] = []
        self._free: dict[tuple[Any, ...], list[Any]] | None = None
        self.asked = 0  # large tensors a copy looked for a spare for (none: reuse has nothing to give)

    def add(self, states: Any) -> None:
        """Every large dense CPU tensor in ``states`` (nested dicts, lists, tuples) becomes a spare."""
        self._states.append(states)
        self._free = None

    def take(self, like: Any) -> Any | None:
        """A spare shaped like ``like`` (None: none fits)."""
        self.asked += 1
        if self._free is None:
            self._free = self._index()
        free = self._free.get((like.shape, like.stride(), like.dtype))
        return free.pop() if free else None

    def _index(self) -> dict[tuple[Any, ...], list[Any]]:
        out: dict[tuple[Any, ...], list[Any]] = {}
        torch = sys.modules.get("torch")
        if torch is None:
            return out
        seen: set[int] = set()
        stack = list(self._states)
        self._states = []
        while stack:
            v = stack.pop()
            if isinstance(v, torch.Tensor):
                if (id(v) not in seen and v.nbytes >= MIN_REUSE_BYTES and v.device.type == "cpu"
                        and _plain(v, torch)):
                    seen.add(id(v))
                    out.setdefault((v.shape, v.stride(), v.dtype), []).append(v)
            elif isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
        return out


def to_cpu(obj: Any, spares: Spares | None = None) -> Any:
    """A copy of a state dict, tensors on CPU (large ones into ``spares`` where one fits). The
    leaves are copied only where they can change: tensors are copied, atoms kept."""
    torch = sys.modules.get("torch")  # not imported yet: the state holds no tensors
    return _copy(obj, torch, spares)


def _copy(obj: Any, torch: Any, spares: Spares | None) -> Any:
    if isinstance(obj, _ATOMS):
        return obj
    if torch is not None and isinstance(obj, torch.Tensor):
        return _copy_tensor(obj, torch, spares)
    if isinstance(obj, dict):
        # A state dict is mostly tensors under dicts (a model's, an optimizer's per-parameter
        # state): copied here without a call per value, the most of a take's Python walk.
        tensor = torch.Tensor if torch is not None else ()
        return {k: _copy_tensor(v, torch, spares) if type(v) is tensor else _copy(v, torch, spares)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v, torch, spares) for v in obj)
    return copy.deepcopy(obj)


def _copy_tensor(obj: Any, torch: Any, spares: Spares | None) -> Any:
    # A state dict's tensors are detached already; a tensor that still needs its grad is cut off it.
    src = obj if type(obj) is torch.Tensor and not obj.requires_grad else obj.detach()
    if _plain(src, torch):
        if spares is not None and src.nbytes >= MIN_REUSE_BYTES:
            buf = spares.take(src)
            if buf is not None:
                return buf.copy_(src)
        if src.is_cpu and type(src) is torch.Tensor:
            # What ``.to("cpu", copy=True)`` gives a plain CPU tensor (values, dtype, strides by
            # ``preserve_format``), at half its dispatch cost: a take copies a tensor per state
            # entry, and most are small.
            return src.clone()
    return src.to("cpu", copy=True)


def _plain(t: Any, torch: Any) -> bool:
    """A dense tensor whose copy is its values alone (no sparse, quantized, conjugate or negative
    view bits that ``.to(copy=True)`` would carry and ``copy_`` would resolve)."""
    return t.layout is torch.strided and not (t.is_quantized or t.is_conj() or t.is_neg() or t.requires_grad)
