"""Rule of ``keras.ops.cast`` between floating-point dtypes."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_core as kcore


@register_backward(kcore.Cast)
class BackwardCastOp(BackwardOperation):
    """``ops.cast(x, dtype)``: ``g`` cast back to ``x``'s dtype (the rule reads the input for
    its dtype). Casts from or to integers carry no gradient (the builder skips them)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.cast(gradient, input.dtype)
