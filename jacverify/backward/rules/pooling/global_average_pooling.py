"""Rules for ``keras.layers.GlobalAveragePooling1D``, ``2D`` and ``3D``."""

from __future__ import annotations

import math

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer, _is_multi
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.pooling._common import spatial_axes


def _expand_to_input(rule, gradient):
    """Put the pooled spatial axes back (size 1) when the layer dropped them."""
    if not rule.layer.keepdims:
        for axis in spatial_axes(rule.n_spatial, rule.layer.data_format):
            gradient = ops.expand_dims(gradient, axis)
    return gradient


@register_backward(
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
)
class BackwardGlobalAveragePooling(BackwardLinearLayer):
    """``g / N`` broadcast over the ``N`` spatial positions of each channel.

    With unknown (``None``) input dimensions the rule takes the input (``is_linear = False``)
    and reads them from it.

    ``GlobalAveragePooling1D`` also takes a mask over the steps: the forward layer averages
    over unmasked steps only, so the gradient is ``g * mask / sum(mask)``. The mask reaches
    the rule in one of two ways:

    * as the layer's second input: a functional model records ``layer(x, mask=m)`` (a mask
      propagated from ``Masking`` or ``Embedding(mask_zero=True)``) as a call on ``[x, m]``.
      The rule is then non-linear, is called ``rule([g, [x, m]])`` and returns
      ``[g_x, zeros_like(m)]`` (the boolean mask gets no gradient);
    * as the ``mask`` argument: the ``(batch, steps)`` mask itself, or the list
      ``[gradient_mask, input_mask]`` that Keras' mask propagation passes.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self.input_dim_wo_batch
        self._mask_is_input = _is_multi(dims)
        if self._mask_is_input or any(d is None for d in dims):
            self.is_linear = False

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._mask_is_input:
            step_mask = input[1]
            return [
                self._masked(gradient, step_mask),
                ops.zeros(ops.shape(step_mask), dtype=gradient.dtype),
            ]
        step_mask = _input_mask(mask)
        if step_mask is not None:
            return self._masked(gradient, step_mask)
        dims = self.input_dim_wo_batch
        if any(d is None for d in dims):
            dims = [int(d) for d in input.shape[1:]]
        gradient = _expand_to_input(self, gradient)
        axes = spatial_axes(self.n_spatial, self.layer.data_format)
        count = math.prod(int(dims[a - 1]) for a in axes)
        gradient = gradient * ops.cast(1.0 / count, gradient.dtype)
        return ops.broadcast_to(gradient, (ops.shape(gradient)[0], *dims))

    def _masked(self, gradient, step_mask):
        """``g * mask / sum(mask)`` over the steps (``GlobalAveragePooling1D`` with a mask)."""
        step_mask = ops.cast(ops.cast(step_mask, "bool"), gradient.dtype)
        repeats = int(gradient.shape[0]) // int(step_mask.shape[0])
        if repeats > 1:  # extra Jacobian axes were folded into the batch axis
            step_mask = ops.repeat(step_mask, repeats, axis=0)
        step_mask = step_mask / ops.sum(step_mask, axis=1, keepdims=True)
        channels_last = self.layer.data_format == "channels_last"
        step_mask = ops.expand_dims(step_mask, 2 if channels_last else 1)
        return _expand_to_input(self, gradient) * step_mask


def _input_mask(mask):
    """The forward input's mask from what Keras passes to the rule's call."""
    if isinstance(mask, (list, tuple)):
        return mask[-1] if len(mask) == 2 else None
    return mask
