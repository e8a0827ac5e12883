"""The model clone_to_backward returns: its eager fast path (rules called without
``Layer.__call__``) gives what the plain Keras functional model gives, keeps dtypes, and still
works symbolically and after loading."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

from jacverify import clone_to_backward
from jacverify.backward.clone import BackwardModel, GradientSum


def _branchy(dtype="float32"):
    x = keras.Input((5,), dtype=dtype)
    a = keras.layers.Dense(4, activation="relu", dtype=dtype)(x)
    b = keras.layers.Dense(4, activation="tanh", dtype=dtype)(x)
    s = keras.layers.Add(dtype=dtype)([a, b, a])
    y = keras.layers.Dense(3, dtype=dtype)(keras.layers.Concatenate(dtype=dtype)([s, a, x]))
    return keras.Model(x, y)


def _plain_functional(backward):
    return keras.Model(backward.inputs, backward.outputs)


def test_fast_path_equals_the_keras_path():
    model = _branchy()
    backward = clone_to_backward(model)
    assert isinstance(backward, BackwardModel)
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((3, 5)).astype("float32"), rng.standard_normal((3, 3)).astype(
        "float32")
    fast = keras.ops.convert_to_numpy(backward([x, g]))
    plain = keras.ops.convert_to_numpy(_plain_functional(backward)([x, g]))
    np.testing.assert_array_equal(fast, plain)


def test_float64_gradient_sums_stay_float64():
    # Elementwise layers only: Keras computes float64 Dense (matmul) in float32 on torch.
    x = keras.Input((5,), dtype="float64")
    a = keras.layers.Activation("tanh", dtype="float64")(x)
    b = keras.layers.Activation("sigmoid", dtype="float64")(x)
    s = keras.layers.Add(dtype="float64")([a, b, a])
    model = keras.Model(x, keras.layers.Multiply(dtype="float64")([s, x, a])[:, :3])
    backward = clone_to_backward(model)
    sums = [layer for layer in backward.layers if isinstance(layer, GradientSum)]
    assert sums and all(layer.compute_dtype == "float64" for layer in sums)
    x = torch.tensor(np.random.default_rng(1).standard_normal((2, 5)))
    g = torch.ones(2, 3, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    model(xr).backward(g)
    got = backward([x, g])
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.detach().numpy(), xr.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_backward_model_used_symbolically_inside_another_model():
    model = _branchy()
    backward = clone_to_backward(model)
    x, g = keras.Input((5,)), keras.Input((3,))
    outer = keras.Model([x, g], backward([x, g]) * 2.0)
    data = [np.ones((2, 5), "float32"), np.ones((2, 3), "float32")]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outer(data)),
                               2.0 * keras.ops.convert_to_numpy(backward(data)), rtol=1e-6)


def test_loaded_backward_model_is_a_backward_model(tmp_path):
    backward = clone_to_backward(_branchy())
    backward.save(tmp_path / "b.keras")
    loaded = keras.saving.load_model(tmp_path / "b.keras")
    assert isinstance(loaded, BackwardModel)


@pytest.mark.parametrize("use_no_grad", [True, False])
def test_fast_path_under_and_outside_no_grad(use_no_grad):
    model = _branchy()
    backward = clone_to_backward(model)
    x, g = torch.randn(2, 5), torch.randn(2, 3)
    if use_no_grad:
        with torch.no_grad():
            got = backward([x, g])
    else:
        got = backward([x, g])
    xr = x.clone().requires_grad_(True)
    model(xr).backward(g)
    np.testing.assert_allclose(got.detach().numpy(), xr.grad.numpy(), rtol=1e-5, atol=1e-6)
