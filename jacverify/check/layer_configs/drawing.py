"""Draw values from a Hypothesis strategy reproducibly: the same seed gives the same values.

The first value is the strategy's simplest (Hypothesis tries it first), the others random
from the seed; a strategy with fewer distinct values than asked gives them all once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from jacverify.check.seeded_draws import draws_from_seed_alone, engine_draws
from jacverify.check.storage import hypothesis_storage


def draw_configs(strategy: st.SearchStrategy, n: int, seed: int) -> list[Any]:
    """Up to ``n`` values of ``strategy``, the same for the same ``seed``.

    Raises what the strategy raises while drawing.
    """
    found: list = []
    if n <= 0:
        return found
    drawing = settings(
        max_examples=int(n),
        database=None,
        deadline=None,
        derandomize=False,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    with hypothesis_storage(), draws_from_seed_alone():
        drawn = engine_draws(strategy, drawing, seed)  # what @given below would pass
    if drawn is not None:
        if drawn.error is not None:
            raise drawn.error
        return drawn.values[:n]

    @hypothesis_seed(int(seed))
    @drawing
    @given(value=strategy)
    def collect(value) -> None:
        found.append(value)

    with hypothesis_storage(), draws_from_seed_alone():
        collect()
    return found[:n]
