"""Rule of BatchNormalization (inference mode) against torch autograd."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify import BackwardLinearLayer, clone_to_backward, get_backward_rule
from tests.backward.reference import assert_rule_matches_autograd, make_rule, model_autograd_vjp


def _batch_norm(shape, dtype="float32", seed=0, **kwargs):
    """A built BatchNormalization layer with non-trivial moving statistics, gamma and beta."""
    layer = keras.layers.BatchNormalization(dtype=dtype, **kwargs)
    layer.build((None, *shape))
    rng = np.random.default_rng(seed)
    channels = shape[layer.axis - 1 if layer.axis > 0 else layer.axis]
    layer.moving_mean.assign(rng.standard_normal(channels))
    layer.moving_variance.assign(rng.uniform(0.05, 4.0, channels))
    if layer.scale:
        gamma = rng.uniform(0.3, 2.0, channels) * rng.choice([-1.0, 1.0], channels)
        layer.gamma.assign(gamma)
    if layer.center:
        layer.beta.assign(rng.standard_normal(channels))
    return layer


def _x(shape, dtype="float32", batch=3, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype)


CASES = [
    # (input shape without batch, layer kwargs, dtype)
    ((5,), {}, "float32"),
    ((4, 4, 3), {}, "float32"),
    ((4, 4, 3), {"axis": -1, "epsilon": 0.5}, "float32"),
    ((3, 4, 4), {"axis": 1}, "float32"),  # channels_first
    ((2, 5, 3), {"axis": 2}, "float32"),
    ((2, 5, 3), {"axis": -2}, "float32"),
    ((4, 3), {"center": False}, "float32"),
    ((4, 3), {"scale": False}, "float32"),
    ((4, 3), {"center": False, "scale": False}, "float32"),
    ((3, 2, 2, 2), {"axis": 1, "renorm": True}, "float32"),  # 3D, channels_first, renorm
    ((5,), {}, "float64"),
    ((3, 4, 4), {"axis": 1, "epsilon": 1e-5}, "float64"),
    ((4, 3), {"scale": False, "center": False}, "float64"),
]


def test_batch_normalization_rule_is_registered_and_linear():
    layer = _batch_norm((4, 3))
    assert get_backward_rule(layer).__name__ == "BackwardBatchNormalization"
    assert make_rule(layer, _x((4, 3))).is_linear


@pytest.mark.parametrize("shape,kwargs,dtype", CASES, ids=str)
def test_batch_normalization(shape, kwargs, dtype):
    layer = _batch_norm(shape, dtype, **kwargs)
    # BatchNormalization computes in result_type(inputs.dtype, "float32"), which Keras 3 on
    # non-TensorFlow backends maps to float32 even for float64 inputs: autograd of a float64
    # layer is float32-accurate (the rule is float64-accurate, see the test by hand).
    tolerances = {"rtol": 1e-6, "atol": 1e-7} if dtype == "float64" else {}
    assert_rule_matches_autograd(layer, _x(shape, dtype), **tolerances)


def test_batch_normalization_by_hand():
    """``g * gamma / sqrt(var + eps)`` along the channel axis, by hand."""
    layer = _batch_norm((3, 2, 2), "float64", axis=1, epsilon=0.25)
    x = _x((3, 2, 2), "float64")
    g = np.random.default_rng(2).standard_normal(x.shape)
    got = make_rule(layer, x)(g)
    gamma = keras.ops.convert_to_numpy(layer.gamma)
    var = keras.ops.convert_to_numpy(layer.moving_variance)
    factor = (gamma / np.sqrt(var + 0.25)).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), g * factor, rtol=1e-12)


# ------------------------------------------------------- the tests can fail: wrong rules
class _ForgetsGamma(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        var = keras.ops.cast(self.layer.moving_variance, gradient.dtype)
        return gradient * keras.ops.rsqrt(var + self.layer.epsilon)


class _ForgetsEpsilon(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        var = keras.ops.cast(self.layer.moving_variance, gradient.dtype)
        gamma = keras.ops.cast(self.layer.gamma, gradient.dtype)
        return gradient * gamma * keras.ops.rsqrt(var)


class _LastAxisAlways(BackwardLinearLayer):
    """Broadcasts along the last axis whatever the layer's ``axis``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        var = keras.ops.cast(self.layer.moving_variance, gradient.dtype)
        gamma = keras.ops.cast(self.layer.gamma, gradient.dtype)
        return gradient * gamma * keras.ops.rsqrt(var + self.layer.epsilon)


def test_reference_rejects_a_forgotten_gamma():
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(_batch_norm((4, 3)), _x((4, 3)), rule_class=_ForgetsGamma)


def test_reference_rejects_a_forgotten_epsilon():
    layer = _batch_norm((4, 3), epsilon=0.1)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, _x((4, 3)), rule_class=_ForgetsEpsilon)


def test_reference_rejects_the_wrong_channel_axis():
    layer = _batch_norm((3, 3, 3), axis=1)  # square, so the wrong axis still broadcasts
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, _x((3, 3, 3)), rule_class=_LastAxisAlways)


# --------------------------------------------------------------------- in a whole model
def test_backward_model_with_batch_normalization(tmp_path):
    """The moving statistics and gamma must survive saving the backward model."""
    inputs = keras.Input((4, 4, 3))
    bn = keras.layers.BatchNormalization(axis=-1)
    outputs = keras.layers.BatchNormalization(axis=1, center=False)(bn(inputs))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    for layer in model.layers[1:]:
        channels = layer.moving_variance.shape[0]
        layer.moving_variance.assign(rng.uniform(0.1, 3.0, channels))
        layer.moving_mean.assign(rng.standard_normal(channels))
        layer.gamma.assign(rng.standard_normal(channels))
    x = _x((4, 4, 3), batch=2)
    g = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    expected = model_autograd_vjp(model, x, g)[0]
    backward = clone_to_backward(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(backward([x, g])), expected,
                               rtol=1e-5, atol=1e-6)
    path = tmp_path / "bn_backward.keras"
    backward.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded([x, g])), expected,
                               rtol=1e-5, atol=1e-6)
