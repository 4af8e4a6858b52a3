"""Objects that cross to another process (a Ray actor) without what they loaded.

A model wrapper holds a loaded model, a lock, a thread pool or sockets: none of that should be
pickled, and a lock cannot be. `Shippable` pickles the rest (paths, settings, sampling), and the
copy starts as a freshly built wrapper does: it loads its own model on first use, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar


class Shippable:
    """Subclasses name, in `_transient`, each attribute left behind and what it starts as."""

    _transient: ClassVar[dict[str, Callable[[], Any]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in self._transient:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name, fresh in self._transient.items():
            setattr(self, name, fresh())
