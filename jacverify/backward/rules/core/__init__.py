"""Backward rules for Keras core layers."""

from jacverify.backward.rules.core import dense  # noqa: F401
