"""Backward rules for Keras core layers."""

from jacverify.backward.rules.core import (  # noqa: F401
    dense,
    einsum_dense,
    identity,
    input_layer,
)
