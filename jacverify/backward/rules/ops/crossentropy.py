"""Rules of the crossentropy functions of ``keras.ops.nn``: ``binary_crossentropy``,
``categorical_crossentropy`` and ``sparse_categorical_crossentropy`` (per element / per
example, no reduction: the loss classes of ``keras.losses`` reduce over the batch).

Both arguments may be tensors of the model; the target of the sparse one is an integer class
index (no gradient). As Keras computes them, probabilities (``from_logits=False``) are clipped
to ``[epsilon, 1 - epsilon]`` (the gradient passes at the bounds, torch's convention for
``clip``), and categorical probabilities are first divided by their sum.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._arguments import accumulate, optional_operand
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_nn as knn


def _clipped(p):
    """``clip(p, eps, 1 - eps)`` and the mask where the clip passes the gradient."""
    eps = keras.backend.epsilon()
    low = ops.convert_to_tensor(eps, dtype=p.dtype)
    high = ops.convert_to_tensor(1.0 - eps, dtype=p.dtype)
    inside = ops.logical_and(ops.greater_equal(p, low), ops.less_equal(p, high))
    return ops.clip(p, low, high), ops.cast(inside, p.dtype)


class _BackwardCrossentropyOp(BackwardOperation):
    def _operands(self, input, dtype):  # noqa: A002
        inputs = self._inputs(input)
        target, it = optional_operand(self, 0, "target", inputs, dtype)
        output, io = optional_operand(self, 1, "output", inputs, dtype)
        return inputs, (target, it), (output, io)

    def _finish(self, results, inputs, dtype):
        results = [ops.zeros(ops.shape(x), dtype=dtype) if r is None else r
                   for r, x in zip(results, inputs, strict=True)]
        return self._pack(results)


@register_backward(knn.BinaryCrossentropy)
class BackwardBinaryCrossentropyOp(_BackwardCrossentropyOp):
    """Logits ``z``: ``d/dz = sigmoid(z) - t``, ``d/dt = -z``. Probabilities ``o`` (clipped to
    ``p``): ``d/do = [inside] (p - t) / (p (1 - p))``, ``d/dt = log(1 - p) - log(p)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        inputs, (t, it), (o, io) = self._operands(input, dtype)
        results = [None] * len(inputs)
        if self.layer.from_logits:
            accumulate(results, io, gradient * (ops.sigmoid(o) - t))
            accumulate(results, it, -gradient * o)
        else:
            p, inside = _clipped(o)
            accumulate(results, io, gradient * inside * (p - t) / (p * (1.0 - p)))
            accumulate(results, it, gradient * (ops.log1p(-p) - ops.log(p)))
        return self._finish(results, inputs, dtype)


class _BackwardClassesOp(_BackwardCrossentropyOp):
    """Shared by the categorical crossentropies: the class axis and the gradient of the
    output given the (dense) target."""

    def _axis(self, rank):
        return canonical_axes(self.layer.axis, rank, f"{type(self.layer).__name__}")[0]

    def _output_gradient(self, gradient, o, t, axis):
        """``(d/do, log p)`` of ``-sum(t log p)`` with ``g`` broadcast along ``axis``."""
        g = ops.expand_dims(gradient, axis)
        if self.layer.from_logits:
            log_p = ops.log_softmax(o, axis=axis)
            total = ops.sum(t, axis=axis, keepdims=True)
            return g * (ops.exp(log_p) * total - t), log_p
        total = ops.sum(o, axis=axis, keepdims=True)
        q = o / total
        p, inside = _clipped(q)
        log_p = ops.log(p)
        v = -g * t * inside / p
        return (v - ops.sum(v * q, axis=axis, keepdims=True)) / total, log_p


@register_backward(knn.CategoricalCrossentropy)
class BackwardCategoricalCrossentropyOp(_BackwardClassesOp):
    """``-sum(t log p)`` over ``axis``: logits ``d/dz = softmax(z) sum(t) - t``; probabilities
    through the clip and the division by their sum; ``d/dt = -log p``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        inputs, (t, it), (o, io) = self._operands(input, dtype)
        axis = self._axis(len(o.shape))
        results = [None] * len(inputs)
        d_output, log_p = self._output_gradient(gradient, o, t, axis)
        accumulate(results, io, d_output)
        accumulate(results, it, -ops.expand_dims(gradient, axis) * log_p)
        return self._finish(results, inputs, dtype)


@register_backward(knn.SparseCategoricalCrossentropy)
class BackwardSparseCategoricalCrossentropyOp(_BackwardClassesOp):
    """The categorical rule with the one-hot of the integer target (which gets no
    gradient)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        inputs = self._inputs(input)
        target, it = optional_operand(self, 0, "target", inputs, "int32")
        output, io = optional_operand(self, 1, "output", inputs, dtype)
        rank = len(output.shape)
        axis = self._axis(rank)
        if len(target.shape) == rank and int(target.shape[axis]) == 1:
            target = ops.squeeze(target, axis=axis)
        dense = ops.one_hot(target, int(output.shape[axis]), axis=axis, dtype=dtype)
        results = [None] * len(inputs)
        d_output, _ = self._output_gradient(gradient, output, dense, axis)
        accumulate(results, io, d_output)
        return self._finish(results, inputs, dtype)
