"""Rule of ``keras.ops.unstack``: a call with one output per slice (one upstream gradient per
slice, see docs/writing_rules.md); the gradient is the slices' gradients stacked back."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_core as kcore


@register_backward(kcore.Unstack)
class BackwardUnstackOp(BackwardOperation):
    """``ops.unstack(x, num, axis)`` (not along the batch axis): ``g_x = stack(g_i, axis)``."""

    is_linear = True

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        (self._axis,) = canonical_axes(layer.axis, rank, f"Unstack '{layer.name}'")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slices = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        return ops.stack(slices, axis=self._axis)
