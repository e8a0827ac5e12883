"""Drawing examples with Hypothesis' engine directly gives what ``@given`` gives."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st

from jacverify.check.isolation import check_isolation
from jacverify.check.runner import search
from jacverify.check.seeded_draws import draws_from_seed_alone, engine_draws
from jacverify.check.strategies import example_specs


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples, database=None, deadline=None, phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
    )


def _through_given(strategy, examples: int, seed_value: int) -> list:
    drawn: list = []

    @seed(seed_value)
    @_settings(examples)
    @given(value=strategy)
    def test(value):
        drawn.append(value)

    with draws_from_seed_alone():
        test()
    return drawn


def _through_engine(strategy, examples: int, seed_value: int) -> list:
    with draws_from_seed_alone():
        found = engine_draws(strategy, _settings(examples), seed_value)
    if found is None:
        pytest.skip("this Hypothesis has no engine to draw from directly")
    assert found.error is None
    return found.values


CASES = [
    (example_specs(1, 1), 5, 0),
    (example_specs(16, 3), 15, 1),
    (example_specs(64, 7), 23, 12345),
    (example_specs(3, 12), 30, 2**31),
    (st.lists(st.integers(0, 9), unique=True), 40, 7),
    (st.one_of(st.floats(allow_nan=False), st.tuples(st.booleans(), st.text())), 30, 3),
]


@pytest.mark.parametrize("strategy, examples, seed_value", CASES)
def test_the_engine_draws_what_given_passes(strategy, examples, seed_value):
    with check_isolation():
        expected = _through_given(strategy, examples, seed_value)
        got = _through_engine(strategy, examples, seed_value)
    assert len(expected) >= examples
    assert got == expected


def test_another_seed_draws_other_examples():
    strategy = example_specs(16, 3)
    with check_isolation():
        assert _through_engine(strategy, 15, 1) != _through_engine(strategy, 15, 2)


def test_the_search_explores_the_examples_given_passes():
    strategy = example_specs(16, 3)
    with check_isolation():
        expected = list(dict.fromkeys(_through_given(strategy, 20, 99)))
        found = search(strategy, lambda spec: "pass", lambda outcome: outcome, examples=20,
                       seed=99, shrink_verdicts=(), severity=lambda label: 0, shrink_budget=0)
    assert list(found.explored) == expected
    assert not found.notes


@pytest.mark.parametrize("n, seed_value", [(1, 0), (3, 5), (8, 2**32 - 1)])
def test_configurations_are_drawn_as_given_draws_them(n, seed_value):
    from jacverify.check.layer_configs.drawing import draw_configs

    strategy = st.fixed_dictionaries(
        {"units": st.integers(1, 8), "activation": st.sampled_from([None, "relu", "tanh"]),
         "scale": st.floats(0.1, 3.0)})
    with check_isolation():
        expected = _through_given(strategy, n, seed_value)[:n]
        got = draw_configs(strategy, n, seed_value)
    assert len(got) == n
    assert got == expected


def test_draws_through_given_switches_the_engine_off_and_back_on():
    from jacverify.check.seeded_draws import draws_through_given

    strategy = st.integers(0, 9)
    with draws_through_given():
        assert engine_draws(strategy, _settings(3), 0) is None
    found = engine_draws(strategy, _settings(3), 0)
    if found is None:
        pytest.skip("this Hypothesis has no engine to draw from directly")
    assert found.values


def test_a_strategy_that_raises_stops_the_search_as_through_given():
    from jacverify.check.layer_configs.drawing import draw_configs
    from jacverify.check.seeded_draws import draws_through_given

    strategy = st.integers(0, 5).map(lambda x: 1 // (x - 3))  # raises at 3

    def explore() -> tuple[list, list]:
        found = search(strategy, lambda spec: "pass", lambda outcome: outcome, examples=10,
                       seed=0, shrink_verdicts=(), severity=lambda label: 0, shrink_budget=0)
        return list(found.explored), found.notes

    with check_isolation():
        got = explore()
        with draws_through_given():
            expected = explore()
        with pytest.raises(ZeroDivisionError):
            draw_configs(strategy, 10, 0)
    assert got == expected
    assert got[1] and "ZeroDivisionError" in got[1][0]
