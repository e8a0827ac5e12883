"""Backward rules for Keras merging layers."""

from jacverify.backward.rules.merging import (  # noqa: F401
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
