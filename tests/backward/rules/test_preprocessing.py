"""Rule of Rescaling against torch autograd."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify import BackwardLinearLayer, get_backward_rule
from tests.backward.reference import assert_rule_matches_autograd, make_rule, rule_vjp


def _x(shape, dtype="float32", batch=3, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(dtype)


CASES = [
    # (scale, offset, input shape without batch, dtype)
    (1.0 / 255, 0.0, (4, 4, 3), "float32"),
    (1.0 / 127.5, -1.0, (4, 4, 3), "float32"),
    (-2.5, 0.3, (5,), "float32"),
    ([0.5, -2.0, 3.0], 0.0, (4, 4, 3), "float32"),  # per channel
    ([0.5, -2.0, 3.0], [0.1, 0.2, 0.3], (2, 3), "float32"),  # per-channel scale and offset
    (np.array([0.5, 2.0]), np.array([1.0, -1.0]), (3, 2), "float32"),
    (np.linspace(-1.0, 1.0, 12).reshape(4, 3), 1.0, (4, 3), "float32"),  # full-shape scale
    (3.0, -1.0, (2, 3), "float64"),
    ([0.25, -4.0, 1.5], [1.0, 2.0, 3.0], (2, 2, 3), "float64"),
]


def test_rescaling_rule_is_registered_and_linear():
    layer = keras.layers.Rescaling(2.0)
    assert get_backward_rule(layer).__name__ == "BackwardRescaling"
    assert make_rule(layer, _x((3,))).is_linear


@pytest.mark.parametrize("scale,offset,shape,dtype", CASES, ids=str)
def test_rescaling(scale, offset, shape, dtype):
    layer = keras.layers.Rescaling(scale, offset, dtype=dtype)
    tolerances = {"rtol": 1e-12, "atol": 0.0} if dtype == "float64" else {}
    assert_rule_matches_autograd(layer, _x(shape, dtype), **tolerances)


def test_rescaling_channels_first():
    """With ``channels_first`` Keras reshapes a per-channel scale to (C, 1, 1)."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        layer = keras.layers.Rescaling([0.5, -2.0, 3.0], offset=1.0)
        x = _x((3, 2, 2))
        assert_rule_matches_autograd(layer, x)
        g = _x((3, 2, 2), seed=1)
        (got,) = rule_vjp(make_rule(layer, x), x, g)
        np.testing.assert_allclose(got, g * np.array([0.5, -2.0, 3.0])[None, :, None, None],
                                   rtol=1e-6)
    finally:
        keras.config.set_image_data_format(previous)


def test_rescaling_whose_scale_broadcasts_the_input():
    """A (1,) -> (C,) broadcast by the scale: the gradient is summed back over channels."""
    layer = keras.layers.Rescaling([0.5, -2.0, 3.0])
    x = _x((4, 1))
    assert_rule_matches_autograd(layer, x)


def test_rescaling_config_round_trip():
    layer = keras.layers.Rescaling(np.array([0.5, 2.0]), offset=0.5)
    x = _x((2,))
    rule = make_rule(layer, x)
    again = type(rule).from_config(rule.get_config())
    g = _x((2,), seed=1)
    np.testing.assert_allclose(rule_vjp(again, x, g)[0], rule_vjp(rule, x, g)[0])


# ------------------------------------------------------- the tests can fail: wrong rules
class _FirstChannelScale(BackwardLinearLayer):
    """Uses one scale for every channel."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * float(np.ravel(self.layer.scale)[0])


class _AddsOffset(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * float(self.layer.scale) + float(self.layer.offset)


def test_reference_rejects_a_single_scale_for_every_channel():
    layer = keras.layers.Rescaling([0.5, -2.0, 3.0])
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, _x((4, 3)), rule_class=_FirstChannelScale)


def test_reference_rejects_an_offset_in_the_gradient():
    layer = keras.layers.Rescaling(2.0, offset=-1.0)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, _x((4,)), rule_class=_AddsOffset)
