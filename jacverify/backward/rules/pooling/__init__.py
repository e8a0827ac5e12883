"""Backward rules for Keras pooling layers."""

from jacverify.backward.rules.pooling import (  # noqa: F401
    adaptive_pooling,
    average_pooling,
    global_average_pooling,
    global_max_pooling,
    max_pooling,
)
