"""A process-wide change shared by nested and concurrent blocks."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any


class SharedSwitch:
    """A change to process-wide state made when the first block using it enters and undone
    when the last one leaves, whatever order threads leave in.

    ``switch_on()`` makes the change and returns what ``switch_off(saved)`` needs to undo it.
    """

    def __init__(self, switch_on: Callable[[], Any], switch_off: Callable[[Any], None]) -> None:
        self._switch_on, self._switch_off = switch_on, switch_off
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Any = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._saved = self._switch_on()
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    saved, self._saved = self._saved, None
                    self._switch_off(saved)
