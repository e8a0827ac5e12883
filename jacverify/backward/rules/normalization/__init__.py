"""Backward rules for Keras normalization layers."""

from jacverify.backward.rules.normalization import (  # noqa: F401
    batch_normalization,
    group_normalization,
    layer_normalization,
    rms_normalization,
    unit_normalization,
)
