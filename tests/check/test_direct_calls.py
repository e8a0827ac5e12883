"""Calling rules through ``call``: the same results, errors and verdicts as Keras' ``__call__``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify.backward.factory import make_rule
from jacverify.check.calls import call_rule
from jacverify.check.direct_calls import direct_call_decisions, invoke, through_keras_call
from jacverify.check.layer_check import check_layer
from jacverify.layers.layer import BackwardNonLinearLayer
from tests.check.tutorial_layers import (
    BackwardClip,
    BackwardClipCorrect,
    BackwardClipWrongAtVmax,
    BatchMixingRule,
    Clip,
    NaNRule,
    RaisingRule,
    WrongShapeRule,
)

L = keras.layers
EXAMPLES = 12


def _dense_rule() -> keras.layers.Layer:
    layer = L.Dense(3)
    layer.build((None, 4))
    return make_rule(layer, [[4]], [[3]])


def test_a_rule_is_called_through_call_once_shown_equal():
    rule = _dense_rule()
    rng = np.random.default_rng(0)
    g = rng.standard_normal((2, 3)).astype("float32")
    x = rng.standard_normal((2, 4)).astype("float32")
    first = call_rule(rule, g, x)
    assert list(direct_call_decisions(rule).values()) == [True]
    again = call_rule(rule, g, x)
    with through_keras_call():
        reference = call_rule(rule, g, x)
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(again, reference)
    # and it is g^T J: the Dense kernel, transposed (an independent hand computation)
    kernel = np.asarray(rule.layer.kernel.numpy())
    np.testing.assert_allclose(again, g @ kernel.T, rtol=1e-6)


class _InputSpecRule(BackwardNonLinearLayer):
    """A rule that declares an input spec: Keras' ``__call__`` checks it, ``call`` would not."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = [keras.InputSpec(ndim=2), keras.InputSpec(ndim=2)]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


def test_a_rule_with_an_input_spec_always_goes_through_keras():
    layer = L.Activation("linear")
    layer.build((None, 3))
    rule = _InputSpecRule(layer, [3], [3])
    g = keras.ops.ones((2, 3))
    invoke(rule, [g, g])
    assert direct_call_decisions(rule) == {}
    with pytest.raises(ValueError):  # the spec Keras enforces is still enforced
        invoke(rule, [keras.ops.ones((2, 1, 3)), keras.ops.ones((2, 1, 3))])


class _IdentityRule(BackwardNonLinearLayer):
    """Keras' ``__call__`` casts a float64 gradient to this float32 rule's dtype, ``call``
    would keep it: the shortcut must not be taken."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * 1.0


def test_inputs_keras_would_cast_go_through_keras():
    layer = L.Activation("linear")
    layer.build((None, 3))
    rule = _IdentityRule(layer, [3], [3])
    g = keras.ops.convert_to_tensor(np.ones((2, 3), dtype="float64"))
    out = invoke(rule, [g, g])
    assert keras.backend.standardize_dtype(out.dtype) == "float32"  # Keras cast it
    assert direct_call_decisions(rule) == {}


class _OwnCallRule(BackwardNonLinearLayer):
    """Its ``__call__`` does more than ``call``: the probe sees the difference."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient

    def __call__(self, *args, **kwargs):
        return 2.0 * super().__call__(*args, **kwargs)


def test_a_call_that_differs_from_keras_call_is_not_taken():
    layer = L.Activation("linear")
    layer.build((None, 3))
    rule = _OwnCallRule(layer, [3], [3])
    g = np.ones((2, 3), dtype="float32")
    outs = [call_rule(rule, g, g) for _ in range(3)]
    assert list(direct_call_decisions(rule).values()) == [False]
    for out in outs:
        np.testing.assert_array_equal(out, 2.0 * g)


def test_a_raising_rule_raises_keras_error_either_way():
    layer = L.ReLU()
    layer.build((None, 6))
    rule = make_rule(layer, [[6]], [[6]], rule=RaisingRule)
    g = np.ones((2, 6), dtype="float32")
    messages = []
    for context in (through_keras_call, _no_block):
        with context(), pytest.raises(RuntimeError) as caught:
            call_rule(rule, g, g)
        messages.append(str(caught.value))
    with pytest.raises(RuntimeError) as caught:  # once the path is decided, too
        call_rule(rule, g, g)
    messages.append(str(caught.value))
    assert len(set(messages)) == 1 and "not implemented yet" in messages[0]


class _no_block:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _summary(check) -> list:
    return [check.verdict, check.reason,
            [(f.probe, f.verdict, f.message, f.coordinate) for f in check.findings]]


@pytest.mark.parametrize(
    "layer, rule, shape, verdict",
    [
        (Clip(0.0, 1.0), BackwardClipCorrect, (5,), "pass"),
        (Clip(0.0, 1.0), BackwardClip, (5,), "fail"),
        (Clip(0.0, 1.0), BackwardClipWrongAtVmax, (5,), "boundary"),
        (L.ReLU(), NaNRule, (6,), "fail"),
        (L.ReLU(), WrongShapeRule, (6,), "error"),
        (L.ReLU(), RaisingRule, (6,), "error"),
        (L.ReLU(), BatchMixingRule, (6,), "fail"),
        (L.Dense(5), None, (4,), "pass"),
    ],
    ids=lambda v: getattr(v, "__name__", None) if isinstance(v, type) else None,
)
def test_verdicts_and_findings_equal_through_keras(layer, rule, shape, verdict):
    fast = check_layer(layer, rule, input_shape=shape, examples=EXAMPLES, seed=3,
                       evidence=False)
    with through_keras_call():
        slow = check_layer(layer, rule, input_shape=shape, examples=EXAMPLES, seed=3,
                           evidence=False)
    assert fast.verdict == verdict
    assert _summary(fast) == _summary(slow)

