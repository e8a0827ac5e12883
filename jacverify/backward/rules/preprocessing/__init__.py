"""Backward rules for Keras preprocessing layers."""

from jacverify.backward.rules.preprocessing import rescaling  # noqa: F401
