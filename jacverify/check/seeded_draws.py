"""Hypothesis draws that depend on the seed alone.

Hypothesis mixes into its draws constants it finds in the source files of the "local" modules
loaded in the process (everything outside the standard library and site-packages: the user's
project, an editable install, the test files pytest imported). The checker's examples would
then depend on which modules happen to be loaded, so a seed would not replay the same
examples in another process (a worker, the replay command, a pytest run). While a check draws,
only Hypothesis' built-in constants are used; the user's own Hypothesis tests are untouched
outside checks. Every use of Hypothesis internals by the checker is in this module.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["draws_from_seed_alone"]

_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] = {}


def _providers() -> Any:
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # another Hypothesis layout: nothing to switch off
        return None
    needed = ("_get_local_constants", "CONSTANTS_CACHE", "Constants")
    return providers if all(hasattr(providers, name) for name in needed) else None


def _forget_permitted_constants(providers: Any) -> None:
    cache = providers.CONSTANTS_CACHE
    getattr(cache, "cache", cache).clear()


@contextlib.contextmanager
def draws_from_seed_alone() -> Iterator[None]:
    """Within the block, Hypothesis draws no constants from local source files (nested and
    concurrent blocks share one switch, restored when the last ends)."""
    global _depth
    providers = _providers()
    if providers is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved["get"] = providers._get_local_constants
            empty = providers.Constants()
            providers._get_local_constants = lambda: empty
            _forget_permitted_constants(providers)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                providers._get_local_constants = _saved.pop("get")
                _forget_permitted_constants(providers)
