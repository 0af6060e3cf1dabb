"""A small name -> factory registry; every pluggable part (modalities, poolers, heads, adapters) uses one."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from adapters_kit.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Unknown names raise a :class:`UserError` listing the valid ones.

    >>> poolers = Registry("pooling")
    >>> @poolers.register("mean")
    ... def mean(): ...
    >>> poolers.names()
    ['mean']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
