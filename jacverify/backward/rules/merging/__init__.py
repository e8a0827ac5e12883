"""Backward rules for Keras merging layers."""
