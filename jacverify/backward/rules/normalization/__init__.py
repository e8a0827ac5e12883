"""Backward rules for Keras normalization layers."""

from jacverify.backward.rules.normalization import batch_normalization  # noqa: F401
