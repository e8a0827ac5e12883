"""Backward rules for Keras normalization layers."""
