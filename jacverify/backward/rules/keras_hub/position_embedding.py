"""Rule of ``keras_hub.layers.PositionEmbedding``: its output (the learned position vectors)
depends on the shape of its input, not on its values."""

from __future__ import annotations

from keras import ops
from keras_hub.layers import PositionEmbedding

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward


@register_backward(PositionEmbedding)
class BackwardPositionEmbedding(BackwardNonLinearLayer):
    """Zeros shaped like the input (the layer is called on the token embeddings only to read
    their length). It takes the input only for its (possibly unknown) shape.

    Its call cannot be traced: it slices its table to the input's length, which is unknown
    on symbolic inputs.
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.zeros_like(input, dtype=gradient.dtype)
