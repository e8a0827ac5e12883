"""Rules of the custom layers of keras.applications (InceptionResNetV2's CustomScaleLayer,
ConvNeXt's LayerScale and StochasticDepth) against torch autograd; wrong rules rejected."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

from jacverify import BackwardLinearLayer, get_backward_rule, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()


def _x(shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [0.17, 1.0, -2.5])
def test_custom_scale_layer(scale, dtype):
    layer = CustomScaleLayer(scale, dtype=dtype)
    xs = [_x((2, 3, 3, 4), dtype), _x((2, 3, 3, 4), dtype, seed=1)]
    assert make_rule(layer, xs).is_linear
    assert_rule_matches_autograd(layer, xs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_scale(dtype):
    layer = LayerScale(1e-6, 5, dtype=dtype)
    x = _x((2, 3, 5), dtype)
    layer(x)
    layer.gamma.assign(_x((5,), dtype, seed=2))
    assert_rule_matches_autograd(layer, x)


def test_stochastic_depth_is_the_identity_at_inference():
    layer = StochasticDepth(0.3)
    assert_rule_matches_autograd(layer, _x((2, 4, 4, 3)))


def test_residual_block_with_them_saves(tmp_path):
    x = keras.Input((4, 4, 6))
    h = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    h = keras.layers.LayerNormalization(epsilon=1e-6)(h)
    h = keras.layers.Dense(6, activation="gelu")(h)
    h = LayerScale(0.5, 6)(h)
    h = StochasticDepth(0.1)(h)
    y = CustomScaleLayer(0.2)([x, h])
    assert_model_matches_autograd(keras.Model(x, y), save_to=tmp_path / "block.keras")


def test_rules_are_registered():
    for layer_class in (CustomScaleLayer, LayerScale, StochasticDepth):
        rule = get_backward_rule(layer_class)
        assert rule.__module__.startswith("jacverify.backward.rules.applications.")


class _ScaleOnBothInputs(BackwardLinearLayer):
    """Scales the shortcut too."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return [gradient * self.layer.scale, gradient * self.layer.scale]


def test_reference_rejects_a_scaled_shortcut():
    layer = CustomScaleLayer(0.3)
    xs = [_x((2, 4)), _x((2, 4), seed=1)]
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, xs, rule_class=_ScaleOnBothInputs)
