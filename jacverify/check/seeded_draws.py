"""Hypothesis draws that depend on the seed alone.

Hypothesis mixes into its draws constants it finds in the source files of the "local" modules
loaded in the process (everything outside the standard library and site-packages: the user's
project, an editable install, the test files pytest imported). The checker's examples would
then depend on which modules happen to be loaded, so a seed would not replay the same
examples in another process (a worker, the replay command, a pytest run). While a check draws,
only Hypothesis' built-in constants are used; the user's own Hypothesis tests are untouched
outside checks. Every use of Hypothesis internals by the checker is in this module.

:func:`engine_draws` runs Hypothesis' engine on a strategy without a test around it: the
values ``@given`` would pass to a test that never fails, for the same seed and settings, without
the per-example set-up of a test run (contexts, argument labels, the test's source digest).

Keras draws the default seeds of the layers it creates from Python's ``random`` module:
:func:`seeded_python_random` starts it from a seed while configurations are drawn, so that
they do not depend on what the process did before either.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import settings as Settings
from hypothesis import strategies as st

from jacverify.shared_switch import SharedSwitch

__all__ = [
    "EngineDraws",
    "draws_from_seed_alone",
    "draws_through_given",
    "draws_through_given_active",
    "engine_draws",
    "seeded_python_random",
]

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


#: Set while :func:`draws_through_given` is active.
_THROUGH_GIVEN = [False]


@contextlib.contextmanager
def draws_through_given() -> Iterator[None]:
    """Within the block, :func:`engine_draws` returns ``None``, so callers draw through
    ``@given`` (the same values, more slowly): for same-run speed comparisons."""
    previous, _THROUGH_GIVEN[0] = _THROUGH_GIVEN[0], True
    try:
        yield
    finally:
        _THROUGH_GIVEN[0] = previous


def draws_through_given_active() -> bool:
    """Whether a :func:`draws_through_given` block is running."""
    return _THROUGH_GIVEN[0]


@functools.cache
def _engine() -> tuple[Any, Any] | None:
    """Hypothesis' engine and the context its strategies draw in, or None."""
    try:
        from hypothesis.control import BuildContext
        from hypothesis.internal.conjecture.engine import ConjectureRunner
    except ImportError:  # another Hypothesis layout: callers draw through @given instead
        return None
    if "wrapped_test" not in inspect.signature(BuildContext).parameters:
        return None
    return ConjectureRunner, BuildContext


@dataclass
class EngineDraws:
    """What :func:`engine_draws` drew: the values in order (repeats included), how many test
    cases the engine counted as valid, and what the strategy raised, if anything (the values
    are then those drawn before)."""

    values: list
    valid: int
    error: Exception | None = None


def engine_draws(
    strategy: st.SearchStrategy, settings: Settings, seed: int
) -> EngineDraws | None:
    """What ``@settings(settings) @seed(seed) @given(strategy)`` passes to a test that never
    fails, in order, drawn by Hypothesis' engine directly. ``None`` when this Hypothesis has no
    such engine (then draw through ``@given``). Call it inside :func:`draws_from_seed_alone`."""
    engine = None if _THROUGH_GIVEN[0] else _engine()
    if engine is None:
        return None
    runner_class, build_context = engine
    strategy.validate()
    drawn: list = []

    def test_function(data: Any) -> None:
        with build_context(data, is_final=False, wrapped_test=test_function):
            drawn.append(data.draw(strategy))

    runner = runner_class(
        test_function, settings=settings, random=random.Random(int(seed)), database_key=None
    )
    try:
        runner.run()
    except Exception as error:  # noqa: BLE001 - the strategy's own error, for the caller
        return EngineDraws(drawn, int(getattr(runner, "valid_test_cases", len(drawn))), error)
    return EngineDraws(drawn, int(getattr(runner, "valid_test_cases", len(drawn))))
