"""check_layer in both directions: wrong rules are caught, right rules pass."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from jacverify.backward.registry import MissingBackwardRuleError, get_backward_rule
from jacverify.check import LayerCheck, check_layer
from tests.check.tutorial_layers import (
    BackwardClip,
    BackwardClipCorrect,
    BackwardClipThinBand,
    BackwardClipWrongAtVmax,
    BackwardPlusConstant,
    BatchMixingRule,
    Clip,
    DenseTransposedRule,
    NaNRule,
    PlusConstant,
    RaisingRule,
    ScaledReLURule,
    SignFlippedReLURule,
    WrongShapeRule,
)

L = keras.layers
EXAMPLES = 100


def registered(layer) -> None:
    """Skip when another helper has not registered this layer's rule yet."""
    try:
        get_backward_rule(layer)
    except MissingBackwardRuleError:
        pytest.skip(f"no rule registered for {type(layer).__name__} yet")


def _clip_coordinate_is_offending(check: LayerCheck) -> bool:
    worst = check.counterexample.worst_coordinates[0]
    x = worst["x"]
    wrong_value = worst["rule"] != pytest.approx(worst["reference"], abs=1e-6)
    off_range_or_edge = x < 0 or x > 2 or abs(x) < 1e-2 or abs(x - 2) < 1e-2
    return wrong_value and off_range_or_edge


# ----------------------------------------------------------------- wrong rules are caught
def test_tutorial_clip_rule_is_not_pass_and_names_the_coordinate():
    check = check_layer(Clip(0, 2), BackwardClip, input_shape=(5,), seed=0, examples=EXAMPLES)
    assert check.verdict in ("fail", "boundary"), check.summary()
    assert check.verdict == "fail"  # it is wrong outside [vmin, vmax], not only at the edges
    ce = check.counterexample
    assert ce is not None
    assert _clip_coordinate_is_offending(check), ce.summary()
    label = ce.worst_coordinates[0]["label"]
    assert label.startswith("x[0, ") and label in ce.message
    assert ce.replay.seed == 0 and ce.replay.reproduce_failure.startswith("@reproduce_failure")


def test_clip_rule_wrong_only_at_vmax_is_boundary():
    check = check_layer(
        Clip(0, 2), BackwardClipWrongAtVmax, input_shape=(5,), seed=0, examples=EXAMPLES
    )
    assert check.verdict == "boundary", check.summary()
    ce = check.counterexample
    assert ce.location == "kink"
    assert ce.kink is not None and "layer.vmax" in ce.kink and ce.kink.startswith("x[0, ")
    assert "= 2 = layer.vmax" in ce.kink


def test_clip_rule_wrong_in_a_thin_band_inside_the_range_is_boundary():
    check = check_layer(
        Clip(0, 2), BackwardClipThinBand, input_shape=(5,), seed=0, examples=EXAMPLES
    )
    assert check.verdict == "boundary", check.summary()
    assert "layer.vmax" in check.counterexample.kink


def test_sign_flipped_rule_fails():
    check = check_layer(L.ReLU(), SignFlippedReLURule, input_shape=(6,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
    assert check.counterexample.location == "smooth"


@pytest.mark.parametrize("dtype", ["float64", None])
def test_small_scale_error_fails(dtype):
    check = check_layer(L.ReLU(), ScaledReLURule, input_shape=(6,), seed=0, examples=EXAMPLES,
                        dtype=dtype)
    assert check.verdict == "fail", check.summary()
    assert check.max_rel_error == pytest.approx(1e-3, rel=0.05)
    if dtype == "float64":
        assert check.dtype == "float64"


def test_rule_returning_nan_where_autograd_is_finite_is_a_wrong_value():
    # NaNRule returns NaN for x < 0, where ReLU's derivative is 0: a wrong value at a smooth
    # point, reported with its coordinate.
    check = check_layer(L.ReLU(), NaNRule, input_shape=(6,), seed=0, examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
    assert "NaN" in check.reason and "x[0, " in check.reason and "smooth point" in check.reason
    assert check.headline.probe == "value" and check.headline.coordinate.startswith("x[0, ")


def test_rule_returning_the_wrong_shape_is_an_error():
    check = check_layer(L.ReLU(), WrongShapeRule, input_shape=(6,), seed=0, examples=EXAMPLES)
    assert check.verdict == "error", check.summary()
    assert "shape (2, 5)" in check.reason and "(2, 6)" in check.reason


def test_rule_raising_is_an_error():
    check = check_layer(L.ReLU(), RaisingRule, input_shape=(6,), seed=0, examples=EXAMPLES)
    assert check.verdict == "error", check.summary()
    assert "RuntimeError" in check.reason and "not implemented yet" in check.reason


def test_rule_mixing_the_batch_fails():
    check = check_layer(L.ReLU(), BatchMixingRule, input_shape=(6,), seed=0, examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
    assert "mixes the examples of a batch" in check.reason


def test_untransposed_dense_kernel_fails():
    check = check_layer(L.Dense(4), DenseTransposedRule, input_shape=(4,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()


# ------------------------------------------------------------------- right rules pass
@pytest.mark.parametrize("convention", ["subgradient", "autograd"])
def test_correct_clip_rule_passes_with_exact_bounds(convention):
    check = check_layer(Clip(0, 2), BackwardClipCorrect, input_shape=(5,), seed=0,
                        examples=EXAMPLES, convention=convention)
    assert check.verdict == "pass", check.summary()
    assert check.examples_by_kind["exact_kink"] > 0
    assert check.examples_by_kind["near_kink"] > 0
    assert check.directions_by_location.get("kink", 0) > 0
    assert check.counterexample is None


def test_plus_constant_rule_passes():
    check = check_layer(PlusConstant(2.0), BackwardPlusConstant, input_shape=(4,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()


@pytest.mark.parametrize(
    "make_layer, shape",
    [
        (lambda: L.Dense(3, activation="relu"), (5,)),
        (lambda: L.ReLU(), (6,)),
        (lambda: L.ReLU(max_value=6.0), (6,)),
        (lambda: L.LeakyReLU(), (6,)),
        (lambda: L.Activation("tanh"), (6,)),
        (lambda: L.Activation("softplus"), (6,)),
        (lambda: L.MaxPooling2D(2), (4, 4, 2)),
    ],
    ids=["dense_relu", "relu", "relu6", "leaky_relu", "tanh", "softplus", "max_pool_ties"],
)
def test_native_rules_pass(make_layer, shape):
    layer = make_layer()
    registered(layer)
    check = check_layer(layer, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()
    assert check.examples_by_kind["saturation"] > 0  # large |x| was tried
    assert check.examples_by_kind["tie"] > 0


def test_relu_with_threshold_jumps_and_does_not_fail():
    layer = L.ReLU(threshold=1.0)
    registered(layer)
    check = check_layer(layer, input_shape=(6,), seed=0, examples=EXAMPLES)
    assert check.verdict not in ("fail", "boundary", "error"), check.summary()
    assert check.verdict == "pass"
    assert check.jumps and any("layer.threshold" in j and "jump" in j for j in check.jumps)
    assert check.directions_by_location.get("jump", 0) > 0


def test_built_layer_needs_no_input_shape():
    layer = Clip(0, 2)
    layer.build((None, 3))
    inputs = keras.Input((3,))
    layer(inputs)
    check = check_layer(layer, BackwardClipCorrect, seed=0, examples=20)
    assert check.input_shape == [3]
    assert check.verdict == "pass", check.summary()


def test_unbuilt_layer_without_shape_is_a_usage_error():
    with pytest.raises(ValueError, match="input_shape"):
        check_layer(Clip(0, 2), BackwardClipCorrect, seed=0, examples=5)


# --------------------------------------------------------------------------- skipped
def test_layer_with_integer_input_is_skipped():
    check = check_layer(L.Embedding(10, 3), BackwardClipCorrect, input_shape=(4,), seed=0)
    assert check.verdict == "skipped"
    assert "integer" in check.reason


def test_unregistered_layer_without_rule_is_skipped():
    check = check_layer(Clip(0, 2), input_shape=(4,), seed=0)
    assert check.verdict == "skipped"
    assert "no rule given and none registered" in check.reason and "Clip" in check.reason


# ------------------------------------------------------------------- replay, results
def _comparable(check: LayerCheck) -> dict:
    data = check.to_dict()
    data.pop("duration_s")
    return data


def test_same_seed_same_result_and_json():
    layer = Clip(0, 2)
    first = check_layer(layer, BackwardClip, input_shape=(5,), seed=7, examples=40)
    second = check_layer(layer, BackwardClip, input_shape=(5,), seed=7, examples=40)
    assert _comparable(first) == _comparable(second)
    text = json.dumps(first.to_dict())
    data = json.loads(text)
    assert data["verdict"] == first.verdict
    assert data["counterexample"]["replay"]["seed"] == 7
    assert isinstance(data["counterexample"]["input"], list)
    assert "FAIL" in str(first) and first.reason in first.summary()


def test_counterexample_replays_from_its_example():
    from jacverify.check.layer_check import check_example

    layer = Clip(0, 2)
    check = check_layer(layer, BackwardClipWrongAtVmax, input_shape=(5,), seed=3,
                        examples=EXAMPLES)
    assert check.verdict == "boundary"
    outcome = check_example(layer, BackwardClipWrongAtVmax, check.counterexample.replay.example,
                            input_shape=(5,))
    assert outcome.verdict == "boundary"
    np.testing.assert_array_equal(outcome.example.x[:1], check.counterexample.input)


def test_nan_counterexample_is_json_ready():
    check = check_layer(L.ReLU(), NaNRule, input_shape=(3,), seed=1, examples=20)
    data = json.loads(json.dumps(check.to_dict(), allow_nan=False))
    assert None in data["counterexample"]["rule_output"][0]


def test_model_check_holds_layer_checks():
    from jacverify.check import ModelCheck

    good = check_layer(Clip(0, 2), BackwardClipCorrect, input_shape=(3,), seed=0, examples=10)
    bad = check_layer(Clip(0, 2), BackwardClip, input_shape=(3,), seed=0, examples=10)
    model = ModelCheck("m", layers=[good, bad])
    assert model.verdict == "fail" and model.first_failure is bad
    data = json.loads(json.dumps(model.to_dict()))
    assert data["first_failure"] == bad.layer_name and len(data["layers"]) == 2
    assert "first failing layer" in model.summary()


def test_float64_dense_keeps_its_float64_reference_and_catches_a_small_scale_error():
    from jacverify.backward.rules.core.dense import BackwardDense

    class ScaledDense(BackwardDense):
        def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
            return super().call_on_reshaped_gradient(gradient, input=input) * 1.001

    right = check_layer(L.Dense(16), input_shape=(16,), dtype="float64", examples=10, seed=0)
    assert right.verdict == "pass" and right.reference.float64_clone, right.summary()
    wrong = check_layer(L.Dense(16), ScaledDense, input_shape=(16,), dtype="float64",
                        examples=10, seed=0)
    assert wrong.verdict == "fail", wrong.summary()
