"""Drive Hypothesis from inside the checker: explore, then shrink the worst failure.

1. **Explore**: run ``examples`` examples of a strategy with a seeded Hypothesis engine
   (no database), never raising, so every example is counted and judged. Outcomes never
   steer the generation here, so with a batched ``evaluate_many`` Hypothesis only draws the
   specs (the same ones for the same seed) and they are evaluated afterwards, together;
   without it, each is evaluated after the drawing, in the order drawn. The engine draws the
   specs without a test run around each one (:func:`~jacverify.check.seeded_draws.engine_draws`:
   what ``@given`` would pass, drawn faster). A caller whose strategy's values depend on its
   choices alone (the checker's example specs) asks for ``remember_draws``: the specs drawn for
   a strategy, a count and a seed are then kept for the rest of the process, and a later
   search with the same three reads them instead of running the engine again (the same specs,
   in the same order).
2. **Shrink**: if the worst verdict found is a failure, run the same engine again with the same
   seed, raising for examples with that verdict: Hypothesis meets the same failure (outcomes
   are cached, so replays are free) and shrinks it to a minimal example, which it reports with
   a ``@reproduce_failure`` blob. A budget bounds the new evaluations made while shrinking:
   past it, unseen examples count as passing, so shrinking stops early but stays consistent.

The runner knows nothing about layers: it maps specs to outcomes and reads their verdicts.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from jacverify.check.seeded_draws import (
    EngineDraws,
    draws_from_seed_alone,
    draws_through_given_active,
    engine_draws,
)
from jacverify.check.storage import hypothesis_storage

S = TypeVar("S", bound=Hashable)
Out = TypeVar("Out")


class _Found(Exception):
    """Raised inside the probe to make Hypothesis shrink an example."""


@dataclass
class SearchResult(Generic[S, Out]):
    """What the search saw: every explored outcome, and the shrunk worst one."""

    explored: dict  # spec -> outcome, in the order first seen
    minimal_spec: S | None = None
    minimal: Out | None = None
    reproduce_failure: str | None = None
    shrink_evaluations: int = 0
    notes: list = field(default_factory=list)


@functools.lru_cache(maxsize=64)
def _settings(examples: int, phases: tuple) -> settings:
    """Hypothesis' settings of a search (built once per count and phases: building one
    validates every option)."""
    return settings(
        max_examples=max(1, int(examples)),
        database=None,
        deadline=None,
        derandomize=False,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=True,
        report_multiple_bugs=False,
    )


def _blob(error: BaseException) -> str | None:
    for note in getattr(error, "__notes__", ()) or ():
        match = re.search(r"@reproduce_failure\((.*?)\)", str(note))
        if match:
            return f"@reproduce_failure({match.group(1)})"
    return None


def _run(strategy, probe, phases, count: int, seed: int) -> BaseException | None:
    """Run ``probe`` on ``count`` examples of ``strategy``; what it raised, if anything."""
    test = given(spec=strategy)(probe)
    test = _settings(max(1, int(count)), tuple(phases))(test)
    test = hypothesis_seed(seed)(test)
    try:
        with hypothesis_storage(), draws_from_seed_alone():
            test()
    except BaseException as error:  # noqa: BLE001 - we want Hypothesis' own errors too
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return error
    return None


#: How many (strategy, count, seed) draws :func:`_explore` keeps with ``remember=True``.
REMEMBERED_DRAWS = 512
_remembered: OrderedDict = OrderedDict()
_remembered_lock = threading.Lock()


def forget_remembered_draws() -> None:
    """Forget the draws kept by searches with ``remember_draws`` (the next ones run the
    engine again)."""
    with _remembered_lock:
        _remembered.clear()


def _draws(strategy, count: int, seed: int, remember: bool) -> EngineDraws | None:
    """What the engine draws for ``count`` examples of ``strategy`` from ``seed`` (``None``
    when it cannot: then through ``@given``); with ``remember``, read from the draws already
    made in this process when there are some, and kept for later when they complete."""
    settings_ = _settings(max(1, int(count)), (Phase.generate,))
    if not remember:
        with hypothesis_storage(), draws_from_seed_alone():
            return engine_draws(strategy, settings_, seed)
    key = (strategy, settings_.max_examples, int(seed))
    with _remembered_lock:
        kept = _remembered.get(key)
        if kept is not None:
            _remembered.move_to_end(key)
    if kept is not None and not draws_through_given_active():
        return EngineDraws(list(kept.values), kept.valid)
    with hypothesis_storage(), draws_from_seed_alone():
        found = engine_draws(strategy, settings_, seed)
    if found is not None and found.error is None and found.valid:
        with _remembered_lock:
            _remembered[key] = EngineDraws(tuple(found.values), found.valid)
            while len(_remembered) > REMEMBERED_DRAWS:
                _remembered.popitem(last=False)
    return found


def _explore(strategy, probe, count: int, seed: int, remember: bool = False
             ) -> BaseException | None:
    """Run ``probe`` on ``count`` examples of ``strategy`` in the generate phase, as
    :func:`_run` does (the same examples, in the same order), drawn by Hypothesis' engine
    without a test around each example (``remember``: see the module's docstring); what
    ``probe`` or the strategy raised, if anything."""
    found = _draws(strategy, count, seed, remember)
    if found is None:  # a Hypothesis without that engine: through @given
        return _run(strategy, probe, (Phase.generate,), count, seed)
    try:
        for spec in found.values:
            probe(spec)
    except Exception as error:  # noqa: BLE001 - as _run: the caller notes it
        return error
    if found.error is not None:
        return found.error
    if not found.valid:
        return RuntimeError("Hypothesis could not draw any example")
    return None


def _shrink(
    strategy, evaluate, verdict_of, worst: str, cache: dict, result: SearchResult, *,
    examples: int, seed: int, shrink_budget: int,
) -> None:
    """Replay the search raising on ``worst``: Hypothesis shrinks it (cached outcomes are
    free; past the budget, unseen examples pass)."""
    state = {"new": 0, "last": None}

    def shrink(spec):
        if spec in cache:
            outcome = cache[spec]
        elif state["new"] >= shrink_budget:
            return  # past the budget: unseen examples pass, so shrinking winds down
        else:
            state["new"] += 1
            outcome = cache[spec] = evaluate(spec)
        if verdict_of(outcome) == worst:
            state["last"] = (spec, outcome)
            raise _Found(worst)

    error = _run(strategy, shrink, (Phase.generate, Phase.shrink), examples, seed)
    result.shrink_evaluations = state["new"]
    if isinstance(error, _Found) and state["last"] is not None:
        result.minimal_spec, result.minimal = state["last"]
        result.reproduce_failure = _blob(error)
        return
    # Hypothesis did not meet the failure again: keep the first explored one, unshrunk.
    for spec, outcome in result.explored.items():
        if verdict_of(outcome) == worst:
            result.minimal_spec, result.minimal = spec, outcome
            break
    detail = "" if error is None else f" ({type(error).__name__}: {error})"
    result.notes.append(f"the failure was not shrunk{detail}")


def search(
    strategy: st.SearchStrategy[S],
    evaluate: Callable[[S], Out],
    verdict_of: Callable[[Out], str],
    *,
    examples: int,
    seed: int,
    shrink_verdicts: Sequence[str],
    severity: Callable[[str], int],
    shrink_budget: int,
    explicit: Sequence[S] = (),
    evaluate_many: Callable[[list[S]], list[Out]] | None = None,
    remember_draws: bool = False,
) -> SearchResult[S, Out]:
    """Explore the ``explicit`` specs, then Hypothesis' until ``examples`` in all, and shrink
    the worst outcome whose verdict is in ``shrink_verdicts`` (lower ``severity`` is worse).

    ``evaluate_many(specs)``, when given, evaluates the explored specs together (the same
    outcomes as ``evaluate`` one by one, in order); the shrink phase evaluates its new specs
    with ``evaluate``. ``remember_draws``: ``strategy``'s values depend on Hypothesis' choices
    alone (no side effects, nothing read from outside), so its draws for a count and seed are
    kept for the process and read again by later searches (see the module's docstring)."""
    cache: dict = {}
    result: SearchResult = SearchResult(explored={})
    explicit = list(explicit)[: max(0, int(examples) - 1)]
    drawn: list = []
    if evaluate_many is None:
        def explore(spec):
            if spec not in cache:
                cache[spec] = evaluate(spec)
                result.explored[spec] = cache[spec]

        for spec in explicit:
            explore(spec)
    else:
        def explore(spec):
            drawn.append(spec)
    error = _explore(strategy, explore, max(1, int(examples) - len(explicit)), seed,
                     remember_draws)
    if error is not None:
        result.notes.append(f"exploration stopped early: {type(error).__name__}: {error}")
    if evaluate_many is not None:
        specs = list(dict.fromkeys([*explicit, *drawn]))
        for spec, outcome in zip(specs, evaluate_many(specs), strict=True):
            cache[spec] = result.explored[spec] = outcome
    if not result.explored:
        return result
    worst = min((verdict_of(o) for o in result.explored.values()), key=severity)
    if worst in shrink_verdicts:
        _shrink(strategy, evaluate, verdict_of, worst, cache, result, examples=examples,
                seed=seed, shrink_budget=shrink_budget)
    return result
