"""Rule for ``keras.layers.Softmax`` (with or without a mask)."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer, _is_multi
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import _canonical_axes, softmax_vjp_on


@register_backward(keras.layers.Softmax)
class BackwardSoftmax(BackwardNonLinearLayer):
    """``s * (g - <g, s>)`` along the layer's axis or axes (an int, negative or not, or a
    tuple/list of them; never the batch axis).

    Masks (positions where the mask is False, or <= 0.5 for a numeric mask, take no part in the
    softmax and output 0, as in ``Softmax.call``) are read, in this order, from:

    * the input, when the forward call's mask was a tensor argument the graph recorded
      (``Softmax()(x, mask=m)`` in a functional model): ``input == [x, m]``; the rule then
      returns ``[dx, zeros_like(m)]``;
    * the ``mask`` argument: the mask itself, or the list Keras fills in for
      ``rule([gradient, x])`` when ``x`` carries a Keras mask (``[gradient_mask, x_mask]``).

    A mask without the batch axis, or with a batch of 1, broadcasts; a mask with the forward
    batch is repeated to match extra Jacobian axes folded into the gradient's batch.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        in_dims = self.input_dim_wo_batch
        if _is_multi(in_dims):
            in_dims = in_dims[0]
        self._axes = _canonical_axes(layer.axis, len(in_dims) + 1, f"Softmax '{layer.name}'")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x, explicit_mask = input, None
        if isinstance(input, (list, tuple)):
            x, explicit_mask = input[0], input[1] if len(input) > 1 else None
        m = explicit_mask if explicit_mask is not None else _input_mask(mask)
        if m is None:
            dx = softmax_vjp_on(gradient, x, self._axes)
        else:
            m = _match_batch(_as_bool(m), gradient)
            masked_x = ops.where(m, x, ops.convert_to_tensor(_large_negative(x), x.dtype))
            g = ops.where(m, gradient, ops.zeros_like(gradient))
            dx = ops.where(m, softmax_vjp_on(g, masked_x, self._axes), ops.zeros_like(g))
        if isinstance(input, (list, tuple)):
            return [dx, *[ops.zeros_like(t) for t in input[1:]]]
        return dx

    def compute_mask(self, inputs, previous_mask=None):
        # The rule reads the forward input's mask; the gradient it returns carries none (and
        # overriding this tells Keras the rule accepts a mask instead of warning it drops one).
        return None


def _input_mask(mask):
    """The forward input's mask from the ``mask`` argument (tensor, or Keras' per-input list)."""
    while isinstance(mask, (list, tuple)):
        if len(mask) == 2:  # [gradient mask, input mask]
            mask = mask[1]
        elif len(mask) == 1:
            mask = mask[0]
        else:
            return None
    return mask


def _as_bool(mask):
    if keras.backend.standardize_dtype(mask.dtype) == "bool":
        return mask
    return ops.greater(mask, ops.cast(0.5, mask.dtype))


def _match_batch(mask, gradient):
    """Repeat a mask with the forward batch to the folded batch of the gradient."""
    if len(mask.shape) != len(gradient.shape):
        return mask
    m_batch, g_batch = ops.shape(mask)[0], ops.shape(gradient)[0]
    if m_batch in (1, g_batch) or m_batch is None or g_batch is None:
        return mask
    return ops.repeat(mask, g_batch // m_batch, axis=0)


def _large_negative(x):
    # keras.src.layers.activations.softmax._large_negative_number
    return -3e4 if keras.backend.standardize_dtype(x.dtype) == "float16" else -1e9
