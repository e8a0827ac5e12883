"""A faster computation of a Keras backend function, trusted per configuration only after its
first result agreed with Keras' own.

Checks replace a few of Keras' slow backend functions (:mod:`jacverify.check.float64_depthwise`,
:mod:`jacverify.check.batched_perspective`) while they run. Each replacement describes a call by
a hashable *configuration* (``None`` where the shortcut does not apply); the first call of a
configuration computes both results and remembers whether they agree, and every later call of
it takes the shortcut only if they did, so that a check's result does not depend on the checks
run before it in the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["CheckedShortcut"]


class CheckedShortcut:
    """The agreements of one shortcut with Keras, by configuration (thread-safe)."""

    def __init__(self) -> None:
        self.agreements: dict[Hashable, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, configuration: Hashable | None, shortcut: Callable[[], Any],
                 keras_result: Callable[[], Any], agree: Callable[[Any, Any], bool]) -> Any:
        """The shortcut's result where ``configuration`` agreed with Keras (found out at its
        first call: ``agree(got, expected)`` says whether the shortcut's result may stand for
        Keras'), else Keras' result."""
        if configuration is None or self.agreements.get(configuration) is False:
            return keras_result()
        got = shortcut()
        if configuration not in self.agreements:
            expected = keras_result()
            agrees = got is not None and agree(got, expected)
            with self._lock:
                self.agreements[configuration] = agrees
            if not agrees:
                return expected
        return got
