"""``from jacverify.layers.layer import BackwardLinearLayer`` (the tutorials' import path)."""

from jacverify.backward.base import BackwardLayer, BackwardLinearLayer, BackwardNonLinearLayer

__all__ = ["BackwardLayer", "BackwardLinearLayer", "BackwardNonLinearLayer"]
