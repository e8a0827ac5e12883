"""Rules of Conv1DTranspose/Conv2DTranspose/Conv3DTranspose against torch autograd over
strides, dilation, padding, output_padding, data formats and activations; a wrong rule
rejected."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardLinearLayer, get_backward_rule, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()
L = keras.layers
SHAPES = {1: (7, 3), 2: (5, 6, 3), 3: (3, 4, 3, 2)}
CLASSES = {1: L.Conv1DTranspose, 2: L.Conv2DTranspose, 3: L.Conv3DTranspose}


def _cases():
    for rank, k, s, d, padding, op, fmt in itertools.product(
        [1, 2], [1, 2, 3], [1, 2, 3], [1, 2], ["valid", "same"], [None, 0, 1],
        ["channels_last", "channels_first"],
    ):
        if (op is not None and op >= s) or (d > 1 and s > 1):
            continue
        yield rank, k, s, d, padding, op, fmt
    for k, s, padding in [(2, 2, "same"), (3, 1, "valid"), (1, 3, "valid")]:
        yield 3, k, s, 1, padding, None, "channels_last"


def _x(shape, dtype="float32", batch=2):
    return np.random.default_rng(0).standard_normal((batch, *shape)).astype(dtype)


def _shape(rank, fmt):
    shape = SHAPES[rank]
    return shape if fmt == "channels_last" else (shape[-1], *shape[:-1])


@pytest.mark.parametrize("rank,k,s,d,padding,op,fmt", list(_cases()), ids=str)
def test_conv_transpose_geometry(rank, k, s, d, padding, op, fmt):
    layer = CLASSES[rank](4, k, strides=s, dilation_rate=d, padding=padding, output_padding=op,
                          data_format=fmt)
    x = _x(_shape(rank, fmt))
    assert make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x, extra_axes=(2,) if rank == 1 else ())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_conv_transpose_with_activation(activation, dtype):
    layer = L.Conv2DTranspose(3, 3, strides=2, padding="same", activation=activation,
                              dtype=dtype)
    x = _x((4, 5, 2), dtype)
    assert not make_rule(layer, x).is_linear
    tolerances = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float64" else {}
    assert_rule_matches_autograd(layer, x, **tolerances)


def test_conv_transpose_in_a_decoder_saves(tmp_path):
    model = keras.Sequential([
        keras.Input((4, 4, 3)), L.Conv2DTranspose(4, 3, strides=2, padding="same",
                                                  activation="relu"),
        L.Conv2D(2, 3, padding="same"), L.Conv2DTranspose(1, 2, strides=2),
    ])
    assert_model_matches_autograd(model, save_to=tmp_path / "decoder.keras")


class _FlippedKernel(BackwardLinearLayer):
    """Correlates with the spatially flipped kernel (the convolution, not its adjoint)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.flip(ops.flip(self.layer.kernel, 0), 1)
        return ops.conv(gradient, kernel, strides=list(self.layer.strides), padding="valid")


def test_reference_rejects_a_flipped_kernel():
    layer = L.Conv2DTranspose(2, 3, padding="valid")
    x = _x((4, 4, 2))
    layer(x)
    assert get_backward_rule(layer).__name__ == "BackwardConvTranspose"
    with pytest.raises(AssertionError, match="Not equal"):
        assert_rule_matches_autograd(layer, x, rule_class=_FlippedKernel)
