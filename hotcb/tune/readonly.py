"""``ReadOnly``: a public read-only view of an object's private ``_<name>`` attribute.

Tune's parts keep their state private and let others read it, never write it; one descriptor
says so in one line per attribute instead of a property each.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ReadOnly(Generic[T]):
    """``number: ReadOnly[int] = ReadOnly()`` reads ``self._number``; assigning it raises."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name, self._private = name, "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  (on the class: the descriptor itself)
        return getattr(obj, self._private)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"{self._name} is read-only (the object changes it through its methods)")
