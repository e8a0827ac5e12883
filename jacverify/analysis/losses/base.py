"""Per-example loss layers and the base of their backward rules.

A per-example loss layer is called on ``[y_pred, y_true]`` and returns each example's loss,
shape ``(batch, 1)``: the loss of every position (Keras' own reduction over the last axis),
averaged over the remaining non-batch axes. Its rule returns the exact partial derivatives
with respect to both inputs, so that the checker can judge it like any layer with two inputs;
the analyses use only the derivative with respect to ``y_pred``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer


class PerExampleLoss(keras.layers.Layer):
    """Each example's loss from ``[y_pred, y_true]``, shape ``(batch, 1)``.

    Subclasses implement :meth:`position_losses`: the loss of every position, shape
    ``y_pred.shape[:-1]`` (the last axis is the one Keras reduces over).
    """

    def position_losses(self, y_pred: Any, y_true: Any) -> Any:
        """The loss at every position: ``y_pred.shape[:-1]``."""
        raise NotImplementedError

    def call(self, inputs: list) -> Any:
        y_pred, y_true = inputs
        y_true = ops.cast(y_true, y_pred.dtype)
        values = self.position_losses(y_pred, y_true)
        axes = tuple(range(1, len(values.shape)))
        if axes:
            values = ops.mean(values, axis=axes)
        return ops.expand_dims(values, -1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0][0], 1)


class BackwardPerExampleLoss(BackwardNonLinearLayer):
    """Rule of a :class:`PerExampleLoss`: ``g`` times the partial derivatives of the example's
    loss with respect to ``y_pred`` and ``y_true``.

    Subclasses implement :meth:`position_partials`: the derivatives of each position's loss.
    """

    def position_partials(self, y_pred: Any, y_true: Any) -> tuple[Any, Any]:
        """``(d loss / d y_pred, d loss / d y_true)`` of each position's loss, both shaped like
        ``y_pred``."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        y_pred, y_true = input
        y_true_float = ops.cast(y_true, y_pred.dtype)
        d_pred, d_true = self.position_partials(y_pred, y_true_float)
        positions = math.prod(int(d) for d in y_pred.shape[1:-1])
        scale = ops.reshape(gradient[:, 0], (-1,) + (1,) * (len(y_pred.shape) - 1))
        scale = scale / float(positions)
        return [d_pred * scale, ops.cast(d_true * scale, y_true.dtype)]


def last_axis_size(y_pred: Any) -> float:
    """The size of the axis Keras reduces over, as a float."""
    return float(int(y_pred.shape[-1]))
