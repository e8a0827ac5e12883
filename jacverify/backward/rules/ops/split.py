"""Rules of ``keras.ops.split`` and ``keras.ops.array_split``: calls with several outputs
(one upstream gradient per piece, see docs/writing_rules.md); the gradient is the pieces'
gradients concatenated back along the split axis."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_numpy as knp


class _BackwardSplitLike(BackwardOperation):
    """``g_x = concatenate([g_0, ..., g_n], axis)``: linear."""

    is_linear = True

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        (self._axis,) = canonical_axes(layer.axis, rank, f"{type(layer).__name__} '{layer.name}'")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        pieces = list(gradient) if isinstance(gradient, (list, tuple)) else [gradient]
        if len(pieces) == 1:
            return pieces[0]
        return ops.concatenate(pieces, axis=self._axis)


@register_backward(knp.Split)
class BackwardSplitOp(_BackwardSplitLike):
    """``ops.split(x, indices_or_sections, axis)`` (not along the batch axis)."""


@register_backward(knp.ArraySplit)
class BackwardArraySplitOp(_BackwardSplitLike):
    """``ops.array_split(x, indices_or_sections, axis)`` (not along the batch axis)."""
