"""``MutableState``: the set of knobs a run exposes, keyed by ``param_key``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .actuator import ActuatorState, HotcbActuator, ValueRefused, _plain, _same


class UnknownKnob(ValueRefused):
    """A key that no actuator answers to."""


class MutableState:
    def __init__(self, actuators: Iterable[HotcbActuator] = ()):
        self._by_key: dict[str, HotcbActuator] = {}
        self._published: dict[str, Any] = {}  # the values last described (``describe_all``)
        self._echo: list[tuple[HotcbActuator, str]] = []  # each knob and the metric name it is echoed under
        for a in actuators:
            self.add(a)

    def add(self, actuator: HotcbActuator) -> None:
        if actuator.param_key in self._by_key:
            raise ValueError(f"duplicate actuator key {actuator.param_key!r}")
        self._by_key[actuator.param_key] = actuator
        self._echo.append((actuator, actuator.metric_key))

    def extend(self, actuators: Iterable[HotcbActuator]) -> None:
        for a in actuators:
            self.add(a)

    def bind(self, actuators: Iterable[HotcbActuator]) -> None:
        """Knobs found after start-up, each initialized: a new key is added; one that exists is
        re-bound to the new object's functions (a second ``fit`` builds new optimizers)."""
        for a in actuators:
            cur = self.get(a.param_key)
            if cur is None:
                self.add(a)
                a.initialize()
            else:
                cur.apply_fn, cur.read_fn, cur.companion, cur.base_fn = a.apply_fn, a.read_fn, a.companion, a.base_fn
                cur.initialize()

    def get(self, key: str) -> HotcbActuator | None:
        return self._by_key.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def __iter__(self):
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def keys(self, group: str | None = None) -> list[str]:
        return [k for k, a in self._by_key.items() if group is None or a.group == group]

    def groups(self) -> set[str]:
        return {a.group for a in self._by_key.values()}

    def initialize(self) -> None:
        for a in self._by_key.values():
            a.initialize()

    def refresh(self) -> None:
        for a in self._by_key.values():
            a.refresh()

    def resolve(self, group: str, key: str) -> HotcbActuator:
        a = self._by_key.get(key)
        if a is None or a.group != group:
            known = ", ".join(sorted(self.keys(group))) or "none"
            raise UnknownKnob(f"unknown knob {group}.{key} (known in {group!r}: {known})")
        return a

    def apply(self, group: str, params: dict[str, Any], env: dict[str, Any], step: int | None) -> dict[str, Any]:
        """Apply every key of ``params`` in ``group``; all are validated before any is applied."""
        if not params:
            raise ValueRefused("set_params needs at least one key")
        plan = []
        for key, value in params.items():
            act = self.resolve(group, key)
            if act.state is ActuatorState.DISABLED:
                raise ValueRefused(f"{key} is disabled ({act.last_error})")
            plan.append((act, act.validate(value)))
        return {act.param_key: act.apply(value, env, step) for act, value in plan}

    def echo(self, metrics: dict[str, Any]) -> bool:
        """Each knob's live value (re-read: a scheduler moves lr every step) into ``metrics`` under
        its metric name (``opt/lr``), numbers only; a name the loop logged itself is left as it is.
        Returns whether a knob waits for its verification (``verify`` has nothing to do else)."""
        waiting = False
        disabled, unverified = ActuatorState.DISABLED, ActuatorState.UNVERIFIED
        for a, key in self._echo:
            # ``a.refresh()``, inlined: this runs for every knob on every step of the loop.
            read, state = a.read_fn, a.state
            if state is unverified:
                waiting = True
            if read is not None and state is not disabled:
                try:
                    v = read()
                    a.value = v = v if type(v) is float or type(v) is int else _plain(v)
                except Exception as e:
                    a.last_error = f"read failed: {e!r}"
                    v = a.value
            else:
                v = a.value
            if type(v) is float or (isinstance(v, (int, float)) and not isinstance(v, bool)):  # a float: asked once
                metrics.setdefault(key, v)
        return waiting

    def verify(self, metrics: dict[str, Any] | None = None) -> None:
        for a in self._by_key.values():
            if a.state is ActuatorState.UNVERIFIED:
                a.verify(metrics)

    def describe_all(self) -> list[dict[str, Any]]:
        self.refresh()
        out = [a.describe() for a in self._by_key.values()]
        self._published = {d["key"]: d["value"] for d in out}
        return out

    def moved(self) -> bool:
        """Whether a live value differs from the one last described: a scheduler or the training
        code moved it (a few dict reads; the kernel asks on a wall-clock cadence)."""
        published = self._published
        for key, a in self._by_key.items():
            a.refresh()
            if key not in published or not _same(a.value, published[key]):
                return True
        return False

    def values(self) -> dict[str, Any]:
        self.refresh()
        return {k: a.describe()["value"] for k, a in self._by_key.items()}
