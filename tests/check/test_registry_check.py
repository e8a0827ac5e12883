"""check_registry: native rules pass on drawn configurations, user rules are checked on their
examples (or skipped, saying why), runs replay from their seed; broken twins of native rules
are caught; and (slow) every native rule on three configurations over three seeds."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from hypothesis import strategies as st

import jacverify
from checks.cases_families import CASES as FAMILY_CASES
from checks.cases_families import FAMILIES
from checks.corpus import all_cases, by_name
from jacverify import BackwardNonLinearLayer, RegistryCheck, check_registry, register_backward
from jacverify.check import check_layer
from jacverify.check.layer_configs import (
    draw_configs,
    native_classes,
    native_example_strategy,
    native_family,
    native_skip_reason,
)
from jacverify.check.registry_check import NO_EXAMPLE_REASON, describe_layer
from jacverify.examples.tutorial import BackwardClip, BackwardClipCorrect

L = keras.layers
#: A handful of families (one configuration each: the simplest).
FAST_CLASSES = (L.Dense, L.Conv2D, L.ReLU, L.MaxPooling2D, L.BatchNormalization, L.Maximum)
ALL_FAMILIES = {
    "activations", "core", "convolutional", "pooling", "reshaping", "merging", "normalization",
    "regularization", "preprocessing", "attention", "ops", "ops_numpy", "ops_nn", "applications",
    "recurrent", "losses",
}


class Clamp(keras.layers.Layer):
    """Clips its input to [vmin, vmax] (a class of its own, registered by the tests)."""

    def __init__(self, vmin=0.0, vmax=1.0, **kwargs):
        super().__init__(**kwargs)
        self.vmin, self.vmax = vmin, vmax

    def call(self, inputs):
        return keras.ops.clip(inputs, self.vmin, self.vmax)

    def get_config(self):
        return {**super().get_config(), "vmin": self.vmin, "vmax": self.vmax}


class Twice(keras.layers.Layer):
    def call(self, inputs):
        return 2.0 * inputs


@pytest.fixture(autouse=True)
def _unregister():
    yield
    for cls in (Clamp, Twice):
        jacverify.unregister_backward(cls)


def _register(rule, *classes, example=None):
    register_backward(*classes, example=example)(rule)


def _comparable(result: RegistryCheck) -> list:
    """What must be the same on a replay: configurations, verdicts, counterexamples."""
    rows = []
    for check in result.checks:
        data = check.check.to_dict()
        counterexample = data.get("counterexample") or {}
        rows.append((
            check.label, json.dumps(check.config, sort_keys=True, default=str), check.verdict,
            check.check.reason, json.dumps(counterexample.get("input")),
            json.dumps(counterexample.get("replay")),
        ))
    return rows


# ----------------------------------------------------------------------- native strategies
def test_every_native_rule_has_a_strategy_or_a_reason():
    rules = jacverify.registered_rules()
    native = [cls for cls, entry in rules.items() if entry.source == "native"]
    missing = [
        cls.__name__ for cls in native
        if native_example_strategy(cls) is None and not native_skip_reason(cls)
    ]
    assert not missing, missing
    assert {native_family(cls) for cls in native} == ALL_FAMILIES


def test_strategies_draw_built_layers_keras_accepts():
    """The simplest configuration of every native strategy: a built layer (or an adapter of
    an operation) and a shape that it takes."""
    for cls in native_classes():
        (drawn,) = draw_configs(native_example_strategy(cls), 1, seed=0)
        layer, shape = drawn
        assert isinstance(layer, keras.layers.Layer), cls
        assert layer.built, cls
        shapes = shape if isinstance(shape, list) else [shape]
        assert all(isinstance(s, tuple) and all(n >= 1 for n in s) for s in shapes), (cls, shape)


def test_drawing_is_reproducible_and_varied():
    strategy = native_example_strategy(L.Conv2D)

    def configs(seed):
        return [
            (json.dumps(describe_layer(layer), sort_keys=True, default=str), shape)
            for layer, shape in draw_configs(strategy, 4, seed=seed)
        ]

    first = configs(3)
    assert first == configs(3)
    assert first != configs(4)
    assert len(set(first)) == 4


def test_drawn_weights_come_from_the_draw():
    strategy = native_example_strategy(L.BatchNormalization)
    a, _ = draw_configs(strategy, 2, seed=5)[1]
    b, _ = draw_configs(strategy, 2, seed=5)[1]
    assert a.get_weights()
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
        assert np.all(wa != 0.0) and np.unique(wa).size == wa.size  # not the initializers'
    assert np.all(keras.ops.convert_to_numpy(a.moving_variance) > 0)


# --------------------------------------------------------------------------- check_registry
def test_native_rules_pass_on_a_subset():
    calls = []
    result = check_registry(FAST_CLASSES, configs=1, examples=15, seed=0,
                            progress=lambda i, n, label: calls.append((i, n, label)))
    assert result.verdict == "pass", result.summary()
    assert not result.failures
    names = {c.class_name for c in result.checks}
    assert names == {cls.__name__ for cls in FAST_CLASSES}
    assert len(result.checks) == len(FAST_CLASSES)
    assert all(c.check.examples >= 10 for c in result.checks)
    assert calls == [(i, 6, label) for i, (_, _, label) in enumerate(calls)]
    assert {label for _, _, label in calls} == names
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "pass" and data["counts"] == {"pass": len(FAST_CLASSES)}
    assert "PASS" in result.summary() and "6 rules" in result.summary()


def test_a_user_rule_without_example_is_skipped_with_the_reason():
    _register(BackwardClipCorrect, Clamp)
    result = check_registry([Clamp], include=("user",), seed=0)
    (check,) = result.checks
    assert check.verdict == "skipped" and check.source == "user"
    assert check.check.reason == NO_EXAMPLE_REASON
    assert "pass example= to register_backward" in result.summary()


def test_a_skipped_rule_reports_the_sessions_dtype(float64_session):
    """A rule that could not be checked reports the dtype it would have run in: float64 in a
    float64 session (not the float32 of a check made in the default session)."""
    _register(BackwardClipCorrect, Clamp)
    (check,) = check_registry([Clamp], include=("user",), seed=0).checks
    assert check.verdict == "skipped" and check.check.dtype == "float64"
    assert check.to_dict()["check"]["dtype"] == "float64"


def test_a_user_example_is_checked_right_and_wrong():
    _register(BackwardClipCorrect, Clamp, example=(Clamp(0.0, 2.0), (5,)))
    right = check_registry([Clamp], examples=40, seed=0)
    assert [c.verdict for c in right.checks] == ["pass"]
    assert right.checks[0].config == {"vmin": 0.0, "vmax": 2.0}

    _register(BackwardClip, Clamp, example=(Clamp(0.0, 2.0), (5,)))  # wrong outside [0, 2]
    wrong = check_registry([Clamp], examples=40, seed=0)
    assert wrong.verdict == "fail", wrong.summary()
    assert wrong.failures == wrong.checks
    assert "FAIL" in wrong.summary() and "counterexample" in wrong.summary()


def test_user_examples_as_callable_strategy_and_built_layer():
    class BackwardTwice(BackwardNonLinearLayer):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return 2.0 * gradient

    layer = Twice()
    layer.build((None, 3))
    inputs = keras.Input((3,))
    layer(inputs)  # a built layer whose input shape the checker reads from the graph
    for example, n_configs in [
        (layer, 1),
        (lambda: (Twice(), (2, 2)), 1),
        (st.tuples(st.builds(Twice), st.integers(1, 6).map(lambda n: (n,))), 3),
    ]:
        _register(BackwardTwice, Twice, example=example)
        result = check_registry([Twice], configs=3, examples=15, seed=1)
        assert [c.verdict for c in result.checks] == ["pass"] * n_configs, result.summary()


def test_same_seed_same_configurations_verdicts_and_counterexamples():
    strategy = st.tuples(st.floats(0.5, 3.0).map(lambda v: Clamp(0.0, round(v, 2))),
                         st.integers(2, 5).map(lambda n: (n,)))
    _register(BackwardClip, Clamp, example=strategy)
    first = check_registry([Clamp, L.ReLU], configs=2, examples=15, seed=11)
    second = check_registry([L.ReLU, Clamp], configs=2, examples=15, seed=11)
    assert first.verdict == "fail"
    assert _comparable(first) == _comparable(second)
    assert first.seed == 11
    assert any(c.check.counterexample is not None for c in first.checks)


def test_unknown_classes_and_sources_are_refused():
    with pytest.raises(ValueError, match="no registered rule"):
        check_registry([Twice])
    with pytest.raises(ValueError, match="include"):
        check_registry(["Dense"], include=("plugins",))


def test_register_backward_refuses_a_malformed_example():
    with pytest.raises(TypeError, match="example"):
        register_backward(Twice, example=42)


# ------------------------------------------------------------ the fault corpus's families
def test_the_fault_corpus_covers_every_family():
    names = {case.name for case in all_cases()}
    assert set(FAMILIES) == ALL_FAMILIES
    missing = {family: [n for n in cases if n not in names] for family, cases in FAMILIES.items()}
    assert not any(missing.values()), missing


#: One case of each family runs by default (the corpus runs them all, ``python -m checks``).
FAST_FAMILY_CASES = [cases[0] for cases in FAMILIES.values() if cases[0] in
                     {case.name for case in FAMILY_CASES}]


@pytest.mark.parametrize("name", FAST_FAMILY_CASES)
def test_a_wrong_rule_of_each_family_is_caught(name):
    case = by_name(name)
    keras.utils.set_random_seed(0)
    check = check_layer(case.layer(), case.rule, input_shape=case.input_shape, examples=20,
                        seed=0, shrink_budget=5, evidence=False)
    assert check.verdict in case.accepted, check.summary()


# ---------------------------------------------------------------------------------- slow
def _legitimate_skip(check) -> bool:
    """Integer inputs, or the reason the native strategies give for the class."""
    by_name = {f"{c.__module__}.{c.__qualname__}": c for c in jacverify.registered_rules()}
    reason = check.check.reason
    return reason.startswith("not differentiable in its input") or (
        reason == native_skip_reason(by_name[check.keras_class])
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_native_rule_on_three_configurations(seed):
    result = check_registry(include=("native",), configs=3, examples=30, seed=seed)
    print(result.summary())
    inconclusive = result.with_verdict("inconclusive")
    for check in inconclusive:
        print(f"inconclusive: {check.label}: {check.check.reason}")
    assert all(c.check.reason for c in inconclusive)
    bad_skips = [c.label for c in result.with_verdict("skipped") if not _legitimate_skip(c)]
    assert not bad_skips, bad_skips
    assert not result.failures, "\n".join(c.summary() for c in result.failures)
