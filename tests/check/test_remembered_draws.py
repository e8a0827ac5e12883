"""Searches that remember their draws: the same specs, in the same order, without the engine."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import strategies as st

import jacverify
from jacverify.check import runner
from jacverify.check.isolation import check_isolation
from jacverify.check.runner import forget_remembered_draws, search
from jacverify.check.seeded_draws import draws_through_given, engine_draws
from jacverify.check.strategies import example_specs


def _explored(strategy, examples: int, seed: int, remember: bool) -> list:
    with check_isolation():
        found = search(strategy, lambda spec: "pass", lambda outcome: outcome,
                       examples=examples, seed=seed, shrink_verdicts=(),
                       severity=lambda label: 0, shrink_budget=0, remember_draws=remember)
    assert not found.notes
    return list(found.explored)


@pytest.fixture
def engine_runs(monkeypatch):
    """How many times the runner ran Hypothesis' engine."""
    runs = []

    def counted(*args, **kwargs):
        runs.append(args[2])
        return engine_draws(*args, **kwargs)

    monkeypatch.setattr(runner, "engine_draws", counted)
    forget_remembered_draws()
    yield runs
    forget_remembered_draws()


@pytest.mark.parametrize("n, kinks, examples, seed", [(16, 3, 15, 0), (1, 1, 5, 7),
                                                      (64, 9, 30, 2**31)])
def test_remembered_draws_are_the_engines_in_the_same_order(engine_runs, n, kinks, examples,
                                                            seed):
    strategy = example_specs(n, kinks)
    fresh = _explored(strategy, examples, seed, remember=False)
    first = _explored(strategy, examples, seed, remember=True)
    again = _explored(strategy, examples, seed, remember=True)
    assert len(fresh) >= min(examples, 5)
    assert first == fresh and again == fresh
    assert engine_runs == [seed, seed]  # the third search read the second's draws


def test_another_seed_count_or_strategy_runs_the_engine_again(engine_runs):
    _explored(example_specs(16, 3), 15, 0, remember=True)
    other_seed = _explored(example_specs(16, 3), 15, 1, remember=True)
    other_count = _explored(example_specs(16, 3), 12, 0, remember=True)
    other_strategy = _explored(example_specs(16, 4), 15, 0, remember=True)
    assert len(engine_runs) == 4
    assert other_seed == _explored(example_specs(16, 3), 15, 1, remember=False)
    assert other_count == _explored(example_specs(16, 3), 12, 0, remember=False)
    assert other_strategy == _explored(example_specs(16, 4), 15, 0, remember=False)


def test_without_remembering_every_search_runs_the_engine(engine_runs):
    for _ in range(2):
        _explored(example_specs(16, 3), 15, 0, remember=False)
    assert engine_runs == [0, 0]


def test_draws_through_given_are_not_read_from_memory(engine_runs, monkeypatch):
    remembered = _explored(example_specs(16, 3), 15, 0, remember=True)
    given_runs = []
    original = runner._run

    def counted_run(*args, **kwargs):
        given_runs.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "_run", counted_run)
    with draws_through_given():
        through_given = _explored(example_specs(16, 3), 15, 0, remember=True)
    assert through_given == remembered
    assert len(given_runs) == 1


def test_a_strategy_that_raises_is_not_remembered(engine_runs):
    strategy = st.integers(0, 5).map(lambda x: 1 // (x - 3))  # raises at 3
    for _ in range(2):
        with check_isolation():
            found = search(strategy, lambda spec: "pass", lambda outcome: outcome,
                           examples=10, seed=0, shrink_verdicts=(),
                           severity=lambda label: 0, shrink_budget=0, remember_draws=True)
        assert any("ZeroDivisionError" in note for note in found.notes)
    assert engine_runs == [0, 0]


def test_a_check_after_remembered_draws_gives_the_same_result(engine_runs):
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(4, activation="relu")
    layer.build((None, 3))

    def check() -> dict:
        result = jacverify.check_layer(layer, input_shape=(3,), examples=12, seed=5)
        return {k: v for k, v in result.to_dict().items() if k != "duration_s"}

    first = check()
    second = check()
    assert len(engine_runs) == 1
    forget_remembered_draws()
    assert check() == first == second
    assert len(engine_runs) == 2
    assert first["verdict"] == "pass"


def test_a_wrong_rule_is_still_caught_and_shrunk_after_remembered_draws(engine_runs):
    class DoubledDense(jacverify.BackwardLinearLayer):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            kernel = keras.ops.convert_to_tensor(self.layer.kernel)
            return 2.0 * keras.ops.matmul(gradient, keras.ops.transpose(kernel))

    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(3)
    layer.build((None, 3))
    results = [jacverify.check_layer(layer, DoubledDense, input_shape=(3,), examples=10,
                                     seed=1) for _ in range(2)]
    assert len(engine_runs) == 1
    assert [r.verdict for r in results] == ["fail", "fail"]
    first, second = (r.counterexample for r in results)
    np.testing.assert_array_equal(first.input, second.input)
    assert first.replay.to_dict() == second.replay.to_dict()
