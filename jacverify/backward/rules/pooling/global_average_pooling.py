"""Rules for ``keras.layers.GlobalAveragePooling1D``, ``2D`` and ``3D``."""

from __future__ import annotations

import math

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer, _is_multi
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.pooling._common import spatial_axes


def _expand_to_input(rule, gradient):
    """Put the pooled spatial axes back (size 1) when the layer dropped them."""
    if not rule.layer.keepdims:
        for axis in spatial_axes(rule.n_spatial, rule.layer.data_format):
            gradient = ops.expand_dims(gradient, axis)
    return gradient


class _BackwardGlobalAveragePooling(BackwardLinearLayer):
    """``g / N`` broadcast over the ``N`` spatial positions of each channel.

    With unknown (``None``) input dimensions the rule takes the input (``is_linear = False``)
    and reads them from it.
    """

    n_spatial = 0

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self.input_dim_wo_batch
        if not _is_multi(dims) and any(d is None for d in dims):
            self.is_linear = False

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self.input_dim_wo_batch
        if any(d is None for d in dims):
            dims = [int(d) for d in input.shape[1:]]
        gradient = _expand_to_input(self, gradient)
        axes = spatial_axes(self.n_spatial, self.layer.data_format)
        count = math.prod(int(dims[a - 1]) for a in axes)
        gradient = gradient * ops.cast(1.0 / count, gradient.dtype)
        return ops.broadcast_to(gradient, (ops.shape(gradient)[0], *dims))


@register_backward(keras.layers.GlobalAveragePooling1D)
class BackwardGlobalAveragePooling1D(_BackwardGlobalAveragePooling):
    """Rule for ``GlobalAveragePooling1D``, also with a mask over the steps: the forward
    layer averages over unmasked steps only, so the gradient is ``g * mask / sum(mask)``.

    The mask reaches the rule in one of two ways:

    * as the layer's second input: a functional model records ``layer(x, mask=m)`` (a mask
      propagated from ``Masking`` or ``Embedding(mask_zero=True)``) as a call on ``[x, m]``.
      The rule is then non-linear, is called ``rule([g, [x, m]])`` and returns
      ``[g_x, zeros_like(m)]`` (the boolean mask gets no gradient);
    * as the ``mask`` argument: the ``(batch, steps)`` mask itself, or the list
      ``[gradient_mask, input_mask]`` that Keras' mask propagation passes.
    """

    n_spatial = 1

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._mask_is_input = _is_multi(self.input_dim_wo_batch)
        if self._mask_is_input:
            self.is_linear = False

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._mask_is_input:
            step_mask = input[1]
            return [
                self._masked(gradient, step_mask),
                ops.zeros(ops.shape(step_mask), dtype=gradient.dtype),
            ]
        step_mask = _input_mask(mask)
        if step_mask is None:
            return super().call_on_reshaped_gradient(gradient, input=input, training=training)
        return self._masked(gradient, step_mask)

    def _masked(self, gradient, step_mask):
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


@register_backward(keras.layers.GlobalAveragePooling2D)
class BackwardGlobalAveragePooling2D(_BackwardGlobalAveragePooling):
    """Rule for ``GlobalAveragePooling2D``."""

    n_spatial = 2


@register_backward(keras.layers.GlobalAveragePooling3D)
class BackwardGlobalAveragePooling3D(_BackwardGlobalAveragePooling):
    """Rule for ``GlobalAveragePooling3D``."""

    n_spatial = 3
