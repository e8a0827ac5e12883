"""Rules of calls with several outputs: one upstream gradient per output, zeros for the unused
ones, contributions summed; against torch autograd of the same model."""

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardNonLinearLayer, clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd


@keras.saving.register_keras_serializable(package="jacverify_tests")
class SinAndScaledCos(keras.layers.Layer):
    """Returns ``(sin(x), 3 cos(x))``."""

    def call(self, x):
        return ops.sin(x), 3.0 * ops.cos(x)


@keras.saving.register_keras_serializable(package="jacverify_tests")
class BackwardSinAndScaledCos(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, g_cos = gradient
        return g_sin * ops.cos(input) - 3.0 * g_cos * ops.sin(input)


@keras.saving.register_keras_serializable(package="jacverify_tests")
class WrongSinAndScaledCos(BackwardNonLinearLayer):
    """Forgets the factor 3 of the second output."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_sin, g_cos = gradient
        return g_sin * ops.cos(input) - g_cos * ops.sin(input)


MAPPING = {SinAndScaledCos: BackwardSinAndScaledCos}


def _model(use: str):
    x = keras.Input((5,))
    h = keras.layers.Dense(4)(x)
    a, b = SinAndScaledCos()(h)
    if use == "both":
        out = keras.layers.Dense(3)(keras.layers.Concatenate()([a, b]))
    elif use == "first":
        out = keras.layers.Dense(3)(a)
    elif use == "second":
        out = keras.layers.Dense(3)(b)
    else:  # both as outputs of the model, and one also consumed
        return keras.Model(x, [a, keras.layers.Dense(2)(b) + b[:, :2]])
    return keras.Model(x, out)


@pytest.mark.parametrize("use", ["both", "first", "second"])
def test_several_outputs_match_autograd(use, tmp_path):
    model = _model(use)
    assert_model_matches_autograd(model, mapping=MAPPING, extra_axes=(2, 3),
                                  save_to=tmp_path / "b.keras")


def test_several_outputs_as_model_outputs():
    assert_model_matches_autograd(_model("outputs"), mapping=MAPPING)


def test_several_outputs_jacobian_mode_with_unused_output():
    model = _model("first")
    g_in = keras.Input((4, 3))
    backward = clone_to_backward(model, MAPPING, gradient=g_in)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype("float32")
    eye = np.broadcast_to(np.eye(4, 3, dtype="float32"), (3, 4, 3)).copy()
    rows = keras.ops.convert_to_numpy(backward([x, eye]))
    assert rows.shape == (3, 4, 5)
    reference = clone_to_backward(model, MAPPING)
    for k in range(4):
        np.testing.assert_allclose(
            rows[:, k], keras.ops.convert_to_numpy(reference([x, eye[:, k]])), rtol=1e-6)


def test_wrong_rule_of_several_outputs_is_caught():
    with pytest.raises(AssertionError):
        assert_model_matches_autograd(_model("second"),
                                      mapping={SinAndScaledCos: WrongSinAndScaledCos})


def test_rule_refuses_a_single_gradient():
    layer = SinAndScaledCos()
    rule = BackwardSinAndScaledCos(layer, input_dim_wo_batch=[4],
                                   output_dim_wo_batch=[[4], [4]])
    x = np.ones((2, 4), "float32")
    with pytest.raises(ValueError, match="2 outputs"):
        rule([x, x])
    got = rule([[x, np.zeros_like(x)], x])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), np.cos(x), rtol=1e-6)
