"""The test reference must reject wrong rules (it is the yardstick of every rule test)."""

import keras
import numpy as np
import pytest

from jacverify import BackwardLinearLayer, BackwardNonLinearLayer
from tests.backward.reference import assert_rule_matches_autograd


class _TransposeBug(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return keras.ops.matmul(gradient, self.layer.kernel)  # kernel not transposed


class _DroppedActivation(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return keras.ops.matmul(gradient, keras.ops.transpose(self.layer.kernel))


def test_reference_accepts_the_native_dense_rule():
    layer = keras.layers.Dense(4, activation="tanh")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    assert_rule_matches_autograd(layer, x)


def test_reference_rejects_a_transposed_kernel():
    layer = keras.layers.Dense(4)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, x, rule_class=_TransposeBug)


def test_reference_rejects_a_dropped_activation_derivative():
    layer = keras.layers.Dense(4, activation="tanh")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(layer, x, rule_class=_DroppedActivation)
