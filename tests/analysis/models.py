"""Small models for the analysis tests, and torch autograd references computed on them."""

from __future__ import annotations

import keras
import numpy as np
import torch


def mlp(inputs: int = 6, units: int = 4, activation: str = "tanh", last: str | None = None):
    """A smooth two-layer perceptron (``last``: the output activation)."""
    return keras.Sequential([
        keras.Input((inputs,)),
        keras.layers.Dense(12, activation=activation),
        keras.layers.Dense(units, activation=last),
    ])


def cnn(units: int = 3):
    """A small CNN on 8x8x1 images (ReLU, max pooling)."""
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(units),
    ])


def linear(matrix: np.ndarray):
    """``x -> x W`` as a Dense layer without bias."""
    model = keras.Sequential([keras.Input((matrix.shape[0],)),
                              keras.layers.Dense(matrix.shape[1], use_bias=False)])
    model.layers[0].set_weights([matrix.astype("float32")])
    return model


def autograd_input_gradient(model, x: np.ndarray, scalar_of_output) -> np.ndarray:
    """``d sum(scalar_of_output(model(x))) / dx`` by torch autograd on the Keras model."""
    xt = torch.tensor(np.asarray(x), requires_grad=True)
    value = scalar_of_output(model(xt))
    (gradient,) = torch.autograd.grad(value.sum(), xt)
    return gradient.numpy()


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference over the largest magnitude of the reference."""
    scale = max(float(np.abs(expected).max()), 1e-30)
    return float(np.abs(np.asarray(got, np.float64) - expected).max()) / scale
