"""Backward rules for Keras core layers."""

from jacverify.backward.rules.core import (  # noqa: F401
    dense,
    einsum_dense,
    embedding,
    identity,
    input_layer,
    masking,
)
