"""Backward rules for Keras preprocessing layers."""
