"""Backward rules for Keras pooling layers."""
