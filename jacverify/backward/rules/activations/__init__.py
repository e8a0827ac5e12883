"""Backward rules for Keras activation layers and activation functions."""

from jacverify.backward.rules.activations import (  # noqa: F401
    activation,
    elu,
    leaky_relu,
    prelu,
    relu,
    softmax,
)
