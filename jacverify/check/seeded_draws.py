"""Hypothesis draws that depend on the seed alone.

Hypothesis mixes into its draws constants it finds in the source files of the "local" modules
loaded in the process (everything outside the standard library and site-packages: the user's
project, an editable install, the test files pytest imported). The checker's examples would
then depend on which modules happen to be loaded, so a seed would not replay the same
examples in another process (a worker, the replay command, a pytest run). While a check draws,
only Hypothesis' built-in constants are used; the user's own Hypothesis tests are untouched
outside checks. Every use of Hypothesis internals by the checker is in this module.

Keras draws the default seeds of the layers it creates from Python's ``random`` module:
:func:`seeded_python_random` starts it from a seed while configurations are drawn, so that
they do not depend on what the process did before either.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

from jacverify.shared_switch import SharedSwitch

__all__ = ["draws_from_seed_alone", "seeded_python_random"]

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


def _no_local_constants() -> Any:
    providers = _providers()
    saved = providers._get_local_constants
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
    _forget_permitted_constants(providers)
    return saved


def _local_constants_again(saved: Any) -> None:
    providers = _providers()
    providers._get_local_constants = saved
    _forget_permitted_constants(providers)


_seed_alone = SharedSwitch(_no_local_constants, _local_constants_again)


@contextlib.contextmanager
def draws_from_seed_alone() -> Iterator[None]:
    """Within the block, Hypothesis draws no constants from local source files (nested and
    concurrent blocks share one switch, restored when the last ends)."""
    if _providers() is None:
        yield
        return
    with _seed_alone():
        yield


@contextlib.contextmanager
def seeded_python_random(seed: int) -> Iterator[None]:
    """Within the block, Python's ``random`` module starts from ``seed`` (Keras draws the
    default seeds of the layers it creates from it, so a configuration drawn in a worker gets
    the same ones as in the calling process); its state is restored afterwards."""
    state = random.getstate()
    random.seed(int(seed))
    try:
        yield
    finally:
        random.setstate(state)
