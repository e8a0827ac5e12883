"""The builder converts each call once: rule instances, backward-model layers and build time
grow linearly with depth (a builder that re-walked every path would grow exponentially with
the number of residual blocks, 2^n paths)."""

from __future__ import annotations

import keras
import numpy as np

from jacverify import BackwardNonLinearLayer, clone_to_backward, get_backward_rule
from tests.backward.model_reference import assert_model_matches_autograd

DenseRule = get_backward_rule(keras.layers.Dense)


class CountingDenseRule(DenseRule):
    instances = 0

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        type(self).instances += 1


def residual(n_blocks, width=4, fan_in=False):
    """``h <- h + Dense(Dense_relu(h))`` n times; with ``fan_in`` every block also reads the
    model input (one tensor with n + 1 consumers)."""
    x = keras.Input((width,))
    h = x
    for _ in range(n_blocks):
        r = keras.layers.Dense(width)(keras.layers.Dense(width, activation="relu")(h))
        h = keras.layers.Add()([h, r, x] if fan_in else [h, r])
    return keras.Model(x, h)


def _build(model):
    CountingDenseRule.instances = 0
    backward = clone_to_backward(model, {keras.layers.Dense: CountingDenseRule})
    return backward, CountingDenseRule.instances


def test_one_rule_per_call_and_layers_grow_linearly():
    sizes = {}
    for n in (8, 16, 32):
        backward, rules = _build(residual(n))
        assert rules == 2 * n  # exactly one rule per Dense call
        sizes[n] = len(backward.layers)
    assert sizes[32] - sizes[16] == 2 * (sizes[16] - sizes[8])  # affine in n


def test_fan_in_is_summed_once_per_tensor():
    backward, rules = _build(residual(12, fan_in=True))
    assert rules == 24
    sums = [layer for layer in backward.layers if type(layer).__name__ == "GradientSum"]
    # h gets two contributions per block, x one per block plus the first block's h: the input's
    # gradients are summed by one GradientSum with n + 1 terms, not a chain.
    assert len(sums) <= 13


def test_deep_residual_model_is_right():
    model = residual(40)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for weight in layer.trainable_weights:
            weight.assign(0.3 * rng.standard_normal(weight.shape))
    assert_model_matches_autograd(model, extra_axes=())


def test_deeper_than_the_default_recursion_limit():
    """Keras maps graphs recursively; the backward model of a 1200-layer model is deeper than
    Python's default recursion limit."""
    backward = clone_to_backward(residual(400))
    x = np.ones((2, 4), "float32")
    assert keras.ops.convert_to_numpy(backward([x, x])).shape == (2, 4)


def test_counting_rule_is_a_dense_rule():
    assert issubclass(CountingDenseRule, BackwardNonLinearLayer)
