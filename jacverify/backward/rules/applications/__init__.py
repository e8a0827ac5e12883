"""Backward rules for the custom layers that ``keras.applications`` models use."""

from jacverify.backward.rules.applications import (  # noqa: F401
    custom_scale_layer,
    layer_scale,
    stochastic_depth,
)
