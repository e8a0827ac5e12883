"""Backward rules for Keras activation layers and activation functions."""

from jacverify.backward.rules.activations import activation  # noqa: F401
