"""Backward rules for Keras reshaping layers."""

from jacverify.backward.rules.reshaping import (  # noqa: F401
    cropping,
    flatten,
    permute,
    repeat_vector,
    reshape,
    up_sampling,
    zero_padding,
)
