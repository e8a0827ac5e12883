"""Backward rules for Keras regularization layers (the identity at inference)."""

from jacverify.backward.rules.regularization import (  # noqa: F401
    activity_regularization,
    alpha_dropout,
    dropout,
    gaussian_dropout,
    gaussian_noise,
    spatial_dropout,
)
