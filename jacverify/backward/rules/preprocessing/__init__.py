"""Backward rules for Keras preprocessing layers."""

from jacverify.backward.rules.preprocessing import (  # noqa: F401
    center_crop,
    normalization,
    random_augmentation,
    rescaling,
    resizing,
)
