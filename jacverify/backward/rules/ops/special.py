"""Rules of the special functions of ``keras.ops``: ``erf``, ``erfc``, ``erfinv``, ``i0``
(elementwise) and ``logsumexp`` over per-example axes."""

from __future__ import annotations

import math

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_numpy as knp

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class _BackwardUnaryOp(BackwardOperation):
    """``out = f(x)`` elementwise: ``g * f'(x)``."""

    def derivative(self, x):
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * self.derivative(ops.cast(input, gradient.dtype))


@register_backward(kmath.Erf)
class BackwardErfOp(_BackwardUnaryOp):
    """``erf(x)``: ``2 / sqrt(pi) exp(-x^2)``."""

    def derivative(self, x):
        return _TWO_OVER_SQRT_PI * ops.exp(-ops.square(x))


@register_backward(kmath.Erfc)
class BackwardErfcOp(_BackwardUnaryOp):
    """``erfc(x) = 1 - erf(x)``: ``-2 / sqrt(pi) exp(-x^2)``."""

    def derivative(self, x):
        return -_TWO_OVER_SQRT_PI * ops.exp(-ops.square(x))


@register_backward(kmath.Erfinv)
class BackwardErfinvOp(_BackwardUnaryOp):
    """``erfinv(x)`` on (-1, 1): ``sqrt(pi) / 2 exp(erfinv(x)^2)`` (infinite at +-1)."""

    def derivative(self, x):
        return ops.exp(ops.square(ops.erfinv(x))) / _TWO_OVER_SQRT_PI


@register_backward(kmath.Logsumexp)
class BackwardLogsumexpOp(BackwardOperation):
    """``logsumexp(x, axis, keepdims)``: ``g * softmax(x)`` over ``axis`` (the gradient
    broadcast back along the reduced axes)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        self._axes = canonical_axes(layer.axis, rank, f"Logsumexp '{layer.name}'")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        if not self.layer.keepdims:
            for axis in self._axes:
                gradient = ops.expand_dims(gradient, axis)
        peak = ops.max(x, axis=self._axes, keepdims=True)
        weights = ops.exp(x - peak)
        return gradient * weights / ops.sum(weights, axis=self._axes, keepdims=True)


@register_backward(knp.I0)
class BackwardI0Op(_BackwardUnaryOp):
    """``i0(x)``, the modified Bessel function of order 0: ``I0' = I1``, the modified Bessel
    function of order 1 (keras.ops has no ``i1``: torch's ``special.i1``)."""

    def derivative(self, x):
        if keras.backend.backend() != "torch":
            raise NotImplementedError(
                f"{type(self).__name__} needs the torch backend (it uses torch.special.i1); "
                f"the current Keras backend is '{keras.backend.backend()}'."
            )
        import torch

        return torch.special.i1(x)
