"""Backward rules for Keras reshaping layers."""
