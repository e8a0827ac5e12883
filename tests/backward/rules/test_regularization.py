"""Rules of the regularization layers (the identity at inference) against torch autograd."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from jacverify import BackwardLinearLayer, clone_to_backward, get_backward_rule
from tests.backward.reference import assert_rule_matches_autograd, make_rule, model_autograd_vjp

L = keras.layers

LAYERS = [L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
          L.GaussianDropout, L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization]

CASES = [
    # (layer class, kwargs, input shape without batch, dtype)
    (L.Dropout, {"rate": 0.5}, (6,), "float32"),
    (L.Dropout, {"rate": 0.0}, (6,), "float32"),
    (L.Dropout, {"rate": 0.3, "noise_shape": (None, 1, 3), "seed": 1}, (4, 3), "float32"),
    (L.Dropout, {"rate": 0.9}, (2, 3, 2), "float64"),
    (L.SpatialDropout1D, {"rate": 0.4}, (5, 3), "float32"),
    (L.SpatialDropout1D, {"rate": 0.4}, (5, 3), "float64"),
    (L.SpatialDropout2D, {"rate": 0.4}, (4, 4, 2), "float32"),
    (L.SpatialDropout2D, {"rate": 0.4, "data_format": "channels_first"}, (2, 4, 4), "float32"),
    (L.SpatialDropout3D, {"rate": 0.2}, (3, 3, 3, 2), "float32"),
    (L.SpatialDropout3D, {"rate": 0.2, "data_format": "channels_first"}, (2, 3, 3, 3),
     "float64"),
    (L.GaussianDropout, {"rate": 0.3}, (6,), "float32"),
    (L.GaussianDropout, {"rate": 0.3, "seed": 3}, (3, 4), "float64"),
    (L.GaussianNoise, {"stddev": 0.5}, (6,), "float32"),
    (L.GaussianNoise, {"stddev": 1.0}, (3, 4), "float64"),
    (L.AlphaDropout, {"rate": 0.2}, (6,), "float32"),
    (L.AlphaDropout, {"rate": 0.2, "noise_shape": (None, 1, 4)}, (3, 4), "float64"),
    (L.ActivityRegularization, {"l1": 0.1, "l2": 0.2}, (6,), "float32"),
    (L.ActivityRegularization, {}, (2, 3), "float64"),
]


def _x(shape, dtype, batch=3, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype)


@pytest.mark.parametrize("layer_class", LAYERS, ids=lambda c: c.__name__)
def test_rules_are_registered(layer_class):
    rule_class = get_backward_rule(layer_class)
    assert rule_class.__name__ == f"Backward{re.sub(r'[123]D$', '', layer_class.__name__)}"
    assert rule_class.__module__.startswith("jacverify.backward.rules.regularization.")
    assert rule_class.is_linear


@pytest.mark.parametrize("layer_class,kwargs,shape,dtype", CASES, ids=str)
def test_identity_at_inference(layer_class, kwargs, shape, dtype):
    layer = layer_class(dtype=dtype, **kwargs)
    x = _x(shape, dtype)
    rule = make_rule(layer, x)
    assert rule.is_linear
    tolerances = {"rtol": 1e-12, "atol": 0.0} if dtype == "float64" else {}
    assert_rule_matches_autograd(layer, x, **tolerances)
    g = _x(shape, dtype, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rule(g)), g)


# ------------------------------------------------------- the tests can fail: wrong rules
class _TrainingTimeScale(BackwardLinearLayer):
    """Scales by ``1 / (1 - rate)`` as if dropout were active with every unit kept."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / (1.0 - self.layer.rate)


class _NoisyGradient(BackwardLinearLayer):
    """Adds the layer's noise to the gradient (a confusion of training and inference)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient + self.layer.stddev


@pytest.mark.parametrize("layer_class", [L.Dropout, L.SpatialDropout1D, L.AlphaDropout])
def test_reference_rejects_a_training_time_scale(layer_class):
    layer = layer_class(rate=0.5)
    x = _x((5, 3), "float32")
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, x, rule_class=_TrainingTimeScale)


def test_reference_rejects_a_noisy_gradient():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.GaussianNoise(0.5), _x((4,), "float32"),
                                     rule_class=_NoisyGradient)


# --------------------------------------------------------------------- in a whole model
def test_backward_model_runs_the_regularization_layers_in_inference_mode():
    inputs = keras.Input((4, 4, 2))
    h = L.SpatialDropout2D(0.5)(inputs)
    h = L.GaussianNoise(0.3)(h)
    h = L.Dropout(0.5)(h)
    h = L.AlphaDropout(0.2)(L.GaussianDropout(0.2)(h))
    outputs = L.ActivityRegularization(l1=0.1)(h)
    model = keras.Model(inputs, outputs)
    x = _x((4, 4, 2), "float32", batch=2)
    g = _x((4, 4, 2), "float32", batch=2, seed=1)
    backward = clone_to_backward(model)
    got = keras.ops.convert_to_numpy(backward([x, g]))
    np.testing.assert_array_equal(got, g)
    np.testing.assert_array_equal(got, model_autograd_vjp(model, x, g)[0])
