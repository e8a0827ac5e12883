"""Rules of the exponential and logarithmic ``keras.ops``: ``exp2``, ``expm1``, ``log1p``,
``log2``, ``log10``, ``cbrt``, ``logaddexp``, ``logaddexp2``, ``ldexp`` (``exp`` and ``log``
are in :mod:`.activations` and :mod:`.elementwise`)."""

from __future__ import annotations

import math

import keras
from keras import ops
from keras.src.ops import numpy as knp

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.backward.rules.ops.arithmetic import _BackwardBinary
from jacverify.backward.rules.ops.elementwise import _BackwardUnary


@register_backward(knp.Exp2)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardExp2Op(_BackwardUnary):
    """``2^x``: ``g 2^x ln 2``."""

    def derivative(self, x):
        return ops.exp2(x) * math.log(2.0)


@register_backward(knp.Expm1)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardExpm1Op(_BackwardUnary):
    """``exp(x) - 1``: ``g exp(x)``."""

    def derivative(self, x):
        return ops.exp(x)


@register_backward(knp.Log1p)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardLog1pOp(_BackwardUnary):
    """``log(1 + x)``: ``g / (1 + x)``."""

    def derivative(self, x):
        return 1.0 / (1.0 + x)


@register_backward(knp.Log2)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardLog2Op(_BackwardUnary):
    """``log2(x)``: ``g / (x ln 2)``."""

    def derivative(self, x):
        return 1.0 / (x * math.log(2.0))


@register_backward(knp.Log10)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardLog10Op(_BackwardUnary):
    """``log10(x)``: ``g / (x ln 10)``."""

    def derivative(self, x):
        return 1.0 / (x * math.log(10.0))


@register_backward(knp.Cbrt)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardCbrtOp(_BackwardUnary):
    """``cbrt(x)``: ``g / (3 cbrt(x)^2)`` (``inf`` at 0, where the slope is vertical)."""

    def derivative(self, x):
        c = ops.cbrt(x)
        return 1.0 / (3.0 * c * c)


@register_backward(knp.Logaddexp)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardLogaddexpOp(_BackwardBinary):
    """``log(exp(x1) + exp(x2))``: ``g sigmoid(x1 - x2)`` and ``g sigmoid(x2 - x1)``."""

    def _partials(self, a, b, gradient):
        w = ops.sigmoid(ops.broadcast_to(a - b, ops.shape(gradient)))
        return gradient * w, gradient * (1.0 - w)


@register_backward(knp.Logaddexp2)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardLogaddexp2Op(_BackwardBinary):
    """``log2(2^x1 + 2^x2)``: ``g sigmoid((x1 - x2) ln 2)`` and the complement."""

    def _partials(self, a, b, gradient):
        w = ops.sigmoid(ops.broadcast_to((a - b) * math.log(2.0), ops.shape(gradient)))
        return gradient * w, gradient * (1.0 - w)


@register_backward(knp.Ldexp)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardLdexpOp(BackwardOperation):
    """``ldexp(x1, x2) = x1 2^x2`` with an integer exponent ``x2``: ``g 2^x2`` to ``x1`` (the
    integer exponent gets no gradient)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._operands = [self.call_argument(0, "x1"), self.call_argument(1, "x2")]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        dims = self._runtime_dims(input)
        exponent = self.operand(self._operands[1], inputs, gradient.dtype)
        results = [ops.zeros((ops.shape(gradient)[0], *d), dtype=gradient.dtype) for d in dims]
        if is_input(self._operands[0]):
            i = input_index(self._operands[0])
            results[i] = reduce_to_shape(gradient * ops.exp2(exponent), dims[i])
        return self._pack(results)
