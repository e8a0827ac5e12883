"""Rule of ``keras.ops.top_k``: a call with two outputs, the values and their (integer)
indices. Only the values carry a gradient: each goes back to the position it was taken from.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_math as kmath


@register_backward(kmath.TopK)
class BackwardTopKOp(BackwardOperation):
    """``ops.top_k(x, k, sorted)`` along the last axis: ``g_x[..., i] = g_values[..., j]``
    where ``indices[..., j] == i`` (the positions the forward call picked; at ties, the same
    choice as the forward call, a valid subgradient). The indices' gradient is ignored."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_values = gradient[0]
        _, indices = ops.top_k(input, self.layer.k, sorted=self.layer.sorted)
        size = ops.shape(input)[-1]
        picked = ops.one_hot(indices, size, dtype=g_values.dtype)  # (..., k, size)
        return ops.sum(ops.expand_dims(g_values, -1) * picked, axis=-2)
