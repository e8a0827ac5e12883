"""Rules for ``keras.layers.Embedding`` and ``keras.layers.ReversibleEmbedding``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import CallArgumentsMixin


@register_backward(keras.layers.Embedding)
class BackwardEmbedding(BackwardNonLinearLayer):
    """A lookup table indexed by integers: no gradient reaches the indices.

    The builder never calls this rule for integer inputs (they get no gradient). For float
    inputs (which the layer casts to int32, truncating) the layer is piecewise constant: its
    derivative is 0 wherever it exists, and the rule returns zeros shaped like the input.
    """

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        shape = (ops.shape(gradient)[0], *ops.shape(input)[1:])
        dtype = input.dtype if "float" in str(input.dtype) else gradient.dtype
        return ops.zeros(shape, dtype=dtype)


@register_backward(keras.layers.ReversibleEmbedding)
class BackwardReversibleEmbedding(CallArgumentsMixin, BackwardNonLinearLayer):
    """``reverse=False``: a lookup (as :class:`BackwardEmbedding`). ``reverse=True``: logits
    ``x @ E^T`` (``tie_weights``) or ``x @ R`` (its ``reverse_embeddings``), optionally
    soft-capped ``c * tanh(logits / c)``: ``(g * (1 - tanh^2)) @ kernel^T``, computed in
    ``reverse_dtype`` when the layer sets one. Linear without a soft cap."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._reverse = bool(self.call_argument(1, "reverse", False))
        self.is_linear = self._reverse and layer.logit_soft_cap is None

    def _kernel(self, dtype):
        layer = self.layer
        kernel = ops.transpose(layer.embeddings) if layer.tie_weights else layer.reverse_embeddings
        return ops.cast(kernel, dtype)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if not self._reverse:
            return BackwardEmbedding.call_on_reshaped_gradient(self, gradient, input)
        layer = self.layer
        out_dtype = gradient.dtype
        dtype = layer.reverse_dtype or gradient.dtype
        g = ops.cast(gradient, dtype)
        kernel = self._kernel(dtype)
        if layer.logit_soft_cap is not None:
            cap = ops.cast(layer.logit_soft_cap, dtype)
            logits = ops.einsum("...i,io->...o", ops.cast(input, dtype), kernel)
            t = ops.tanh(logits / cap)
            g = g * (1.0 - t * t)
        return ops.cast(ops.einsum("...o,io->...i", g, kernel), out_dtype)
