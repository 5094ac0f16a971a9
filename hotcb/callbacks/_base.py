"""Shared plumbing of the built-in callbacks: typed ``set_params`` and the every-N gate."""

from __future__ import annotations

from typing import Any


class BuiltinCallback:
    """Subclasses declare ``params`` (name -> default); ``set_params`` accepts only those names,
    so a typo in ``hotcb cb set_params`` fails (and is recorded) instead of being ignored."""

    params: dict[str, Any] = {}

    def __init__(self, **kw: Any) -> None:
        for name, default in self.params.items():
            setattr(self, name, list(default) if isinstance(default, list) else default)
        self.set_params(**kw)

    def set_params(self, **kw: Any) -> None:
        unknown = sorted(set(kw) - set(self.params))
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameters {unknown} (known: {sorted(self.params)})")
        for name, value in kw.items():
            default = self.params[name]
            if isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int) and not isinstance(value, bool):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            setattr(self, name, value)

    def due(self, env: dict[str, Any]) -> bool:
        """True on steps that are a multiple of ``every`` (1 when the callback has no ``every``)."""
        every = max(1, int(getattr(self, "every", 1)))
        return int(env.get("step") or 0) % every == 0
