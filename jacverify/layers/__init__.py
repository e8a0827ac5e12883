"""Backward layer base classes under the name the tutorials import them by."""

from jacverify.layers.layer import BackwardLayer, BackwardLinearLayer, BackwardNonLinearLayer

__all__ = ["BackwardLayer", "BackwardLinearLayer", "BackwardNonLinearLayer"]
