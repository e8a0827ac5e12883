"""float64 models get float64-precise backward models; Jacobian mode (a gradient input with
extra axes) works at every batch size, masks included."""

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardNonLinearLayer, clone_to_backward
from jacverify.backward.precision import float64_precision
from tests.backward.model_reference import model_autograd_vjp


class Block(keras.layers.Layer):
    """A subclassed block (traced): ``x + sigmoid(dense(layer_norm(x)))``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = keras.layers.LayerNormalization()
        self.dense = keras.layers.Dense(6)

    def call(self, x):
        return x + ops.sigmoid(self.dense(self.norm(x)))


def _float64_models():
    yield "mlp", keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="tanh"),
                                   keras.layers.Dense(3)])
    yield "cnn", keras.Sequential([
        keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.MaxPooling2D(), keras.layers.BatchNormalization(), keras.layers.Flatten(),
        keras.layers.Dense(2, activation="softmax")])
    x = keras.Input((6,))
    y = keras.layers.LayerNormalization()(keras.layers.Dense(6)(x) + x * 3.0)
    yield "ops", keras.Model(x, ops.mean(y, axis=1, keepdims=True) + ops.exp(y) @ np.ones((6, 2)))
    x = keras.Input((4, 6))
    y = keras.layers.MultiHeadAttention(2, 3)(x, x)
    yield "attention", keras.Model(x, keras.layers.GlobalAveragePooling1D()(Block()(y)))


def _relative_error(got, expected) -> float:
    got = ops.convert_to_numpy(got)
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def test_float64_models_are_float64_precise(float64_session):
    rng = np.random.default_rng(0)
    for name, model in _float64_models():
        x = rng.standard_normal((4, *model.inputs[0].shape[1:]))
        out = ops.convert_to_numpy(model(x))
        g = rng.standard_normal(out.shape)
        backward = clone_to_backward(model)
        got = backward([x, g])
        assert ops.convert_to_numpy(got).dtype == np.float64, name
        with float64_precision():  # the reference computes its products in float64 too
            (expected,) = model_autograd_vjp(model, x, g)
        assert _relative_error(got, expected) <= 1e-12, name
        # Without it, Keras's own matmul rounds to float32: the reference is the imprecise one.
        (rounded,) = model_autograd_vjp(model, x, g)
        if name == "mlp":
            assert _relative_error(got, rounded) > 1e-10


def test_float64_layers_in_a_float32_session():
    rng = np.random.default_rng(1)
    x_in = keras.Input((5,), dtype="float64")
    h = keras.layers.Dense(4, activation="tanh", dtype="float64")(x_in)
    model = keras.Model(x_in, keras.layers.Dense(3, dtype="float64")(h) * 2.0)
    x, g = rng.standard_normal((3, 5)), rng.standard_normal((3, 3))
    got = clone_to_backward(model)([x, g])
    with float64_precision():
        (expected,) = model_autograd_vjp(model, x, g)
    assert _relative_error(got, expected) <= 1e-12


def test_float64_precision_leaves_float32_alone_and_restores():
    a = keras.ops.ones((2, 2), dtype="float64")
    assert keras.backend.standardize_dtype(ops.matmul(a, a).dtype) == "float32"  # Keras's rule
    with float64_precision(), float64_precision():
        assert keras.backend.standardize_dtype(ops.matmul(a, a).dtype) == "float64"
        b = keras.ops.ones((2, 2), dtype="float32")
        assert keras.backend.standardize_dtype(ops.matmul(b, b).dtype) == "float32"
    assert keras.backend.standardize_dtype(ops.matmul(a, a).dtype) == "float32"


# ----------------------------------------------------------------------------- Jacobian mode
class MaskedScale(keras.layers.Layer):
    """Multiplies the unmasked steps by 3 (uses the Keras mask)."""

    supports_masking = True

    def call(self, x, mask=None):
        import torch  # not traceable: it has the rule below

        return x * 3.0 * torch.unsqueeze(mask, -1).to(x.dtype)


class BackwardMaskedScale(BackwardNonLinearLayer):
    """Uses the mask as given, without repeating it for extra Jacobian axes."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * 3.0 * ops.cast(ops.expand_dims(mask, -1), gradient.dtype)


def _jacobian_models():
    yield "mlp", keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                                   keras.layers.Dense(2)]), {}
    x = keras.Input((5, 3))
    h = MaskedScale()(keras.layers.Masking(0.25)(x))
    yield "masked", keras.Model(x, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling1D()(h))), {MaskedScale: BackwardMaskedScale}
    x = keras.Input((4, 6))
    y = keras.layers.MultiHeadAttention(2, 3)(x, x, use_causal_mask=True)
    yield "attention", keras.Model(x, keras.layers.Dense(2)(Block()(y))[:, -1]), {}


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_jacobian_mode_at_every_batch_size(batch):
    rng = np.random.default_rng(batch)
    for name, model, mapping in _jacobian_models():
        out_shape = tuple(model.outputs[0].shape[1:])
        k = 3
        jacobian = clone_to_backward(model, mapping, gradient=keras.Input((k, *out_shape)))
        x = rng.standard_normal((batch, *model.inputs[0].shape[1:])).astype("float32")
        if name == "masked":
            x[:, 1] = 0.25
        g = rng.standard_normal((batch, k, *out_shape)).astype("float32")
        rows = ops.convert_to_numpy(jacobian([x, g]))
        assert rows.shape == (batch, k, *x.shape[1:]), name
        for row in range(k):
            (expected,) = model_autograd_vjp(model, x, g[:, row])
            np.testing.assert_allclose(rows[:, row], expected, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name} row {row}")
