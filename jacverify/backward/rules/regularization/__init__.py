"""Backward rules for Keras regularization layers."""
