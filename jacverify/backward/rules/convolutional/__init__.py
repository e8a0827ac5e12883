"""Backward rules for Keras convolutional layers."""
