"""One small Registry type: components register under a name, configs look them up."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, Mapping, TypeVar

from netcli.errors import NetcliError

T = TypeVar("T")


class UnknownName(NetcliError):
    """A config asked for a component name that is not registered."""


class Registry(Generic[T]):
    """Maps names to components (classes or functions).

    >>> ACTIVATIONS = Registry("activation")
    >>> @ACTIVATIONS.register("relu")
    ... class ReLU: ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            try:
                item.registered_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return item

        return add

    def unregister(self, name: str) -> None:
        del self._items[name]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownName(self.unknown_message(name)) from None

    def build(self, spec: "str | Mapping"):
        """A component from its config form: a name, or {type: name, **args}."""
        if isinstance(spec, str):
            return self.get(spec)()
        args = dict(spec)
        return self.get(args.pop("type"))(**args)

    def unknown_message(self, name: object) -> str:
        known = ", ".join(sorted(self._items))
        close = difflib.get_close_matches(str(name), list(self._items), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {known}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
