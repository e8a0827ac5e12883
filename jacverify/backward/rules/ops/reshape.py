"""Rules of the ``keras.ops`` that only reshape: ``reshape``, ``expand_dims``, ``squeeze``
(the gradient is reshaped back to the input's shape)."""

from __future__ import annotations

import math

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_numpy as knp


class _BackwardReshapeLike(BackwardOperation):
    """``g`` reshaped to ``(batch, *input shape)``; linear when that shape is known."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()
        self._check_batch()

    def _check_batch(self):
        in_dims, out_dims = self._input_dims()[0], list(self.output_dim_wo_batch)
        if None in in_dims or None in out_dims:
            return
        if math.prod(in_dims) != math.prod(out_dims):
            raise ValueError(
                f"{type(self).__name__}: '{self.layer.name}' turns per-example shape "
                f"{in_dims} into {out_dims}: it moves elements across the batch axis, which "
                "a backward rule cannot express."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)[0]
        return ops.reshape(gradient, (-1, *dims))


@register_backward(knp.Reshape)
class BackwardReshapeOp(_BackwardReshapeLike):
    """``ops.reshape(x, newshape)`` (the batch axis kept first)."""


@register_backward(knp.ExpandDims)
class BackwardExpandDimsOp(_BackwardReshapeLike):
    """``ops.expand_dims(x, axis)`` (not before the batch axis)."""

    def _check_batch(self):
        rank = len(self.output_dim_wo_batch) + 1
        canonical_axes(self.layer.axis, rank, f"ExpandDims '{self.layer.name}'")


@register_backward(knp.Squeeze)
class BackwardSqueezeOp(_BackwardReshapeLike):
    """``ops.squeeze(x, axis)`` (not the batch axis; ``axis=None`` squeezes only the known
    size-1 axes of the per-example shape)."""

    def _check_batch(self):
        if self.layer.axis is not None:
            rank = len(self._input_dims()[0]) + 1
            canonical_axes(self.layer.axis, rank, f"Squeeze '{self.layer.name}'")
