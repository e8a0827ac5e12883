"""Backward rules for Keras convolutional layers."""

from jacverify.backward.rules.convolutional import (  # noqa: F401
    conv,
    depthwise_conv,
    separable_conv,
)
