"""Rule of ``keras.ops.moments(x, axes, keepdims)``: a call with two outputs, the mean and
the (biased) variance over ``axes`` (one upstream gradient per output, see
docs/writing_rules.md)."""

from __future__ import annotations

import math

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_nn as knn


@register_backward(knn.Moments)
class BackwardMomentsOp(BackwardOperation):
    """``g_x = (g_mean + 2 g_var (x - mean)) / n`` with ``n`` the number of reduced values
    (axes other than the batch axis)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        self._axes = canonical_axes(layer.axes, len(dims) + 1,
                                    f"Moments '{layer.name}'")
        self._count = math.prod(int(dims[a - 1]) for a in self._axes) if self._dims_known() \
            else None

    def _unreduce(self, gradient):
        if not self.layer.keepdims:
            for axis in self._axes:
                gradient = ops.expand_dims(gradient, axis)
        return gradient

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        g_mean, g_var = (self._unreduce(g) for g in gradient)
        x = ops.cast(input, g_mean.dtype)
        count = self._count or math.prod(int(x.shape[a]) for a in self._axes)
        centred = x - ops.mean(x, axis=self._axes, keepdims=True)
        return (g_mean + 2.0 * g_var * centred) / float(count)
