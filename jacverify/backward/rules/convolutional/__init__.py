"""Backward rules for Keras convolutional layers."""

from jacverify.backward.rules.convolutional import (  # noqa: F401
    conv,
    conv_transpose,
    depthwise_conv,
    separable_conv,
)
