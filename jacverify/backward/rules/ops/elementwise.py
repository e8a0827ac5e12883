"""Rules of elementwise unary ``keras.ops``: ``negative``, ``square``, ``sqrt``, ``abs``,
``log``, ``reciprocal``, ``rsqrt``, ``clip`` (the activation-like ones, ``relu``, ``sigmoid``,
``tanh``, ``exp``, ``softmax``..., are in :mod:`.activations`)."""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_numpy as knp


class _BackwardUnary(BackwardOperation):
    """``out = f(x)`` elementwise: ``g * f'(x)``."""

    def derivative(self, x):
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        return gradient * self.derivative(x)


@register_backward(knp.Negative)
class BackwardNegativeOp(BackwardOperation):
    """``-x``: ``-g``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -gradient


@register_backward(knp.Square)
class BackwardSquareOp(_BackwardUnary):
    """``x**2``: ``2 x g``."""

    def derivative(self, x):
        return 2.0 * x


@register_backward(knp.Sqrt)
class BackwardSqrtOp(_BackwardUnary):
    """``sqrt(x)``: ``g / (2 sqrt(x))`` (``inf`` at 0, as torch)."""

    def derivative(self, x):
        return 0.5 / ops.sqrt(x)


@register_backward(knp.Absolute, knp.Abs)
class BackwardAbsOp(_BackwardUnary):
    """``|x|``: ``g * sign(x)`` (0 at 0, torch's value, a subgradient)."""

    def derivative(self, x):
        return ops.sign(x)


@register_backward(knp.Log)
class BackwardLogOp(_BackwardUnary):
    """``log(x)``: ``g / x``."""

    def derivative(self, x):
        return 1.0 / x


@register_backward(knp.Reciprocal)
class BackwardReciprocalOp(_BackwardUnary):
    """``1 / x``: ``-g / x**2``."""

    def derivative(self, x):
        r = 1.0 / x
        return -r * r


@register_backward(kmath.Rsqrt)
class BackwardRsqrtOp(_BackwardUnary):
    """``1 / sqrt(x)``: ``-g / (2 x sqrt(x))``."""

    def derivative(self, x):
        r = ops.rsqrt(x)
        return -0.5 * r * r * r


@register_backward(knp.Clip)
class BackwardClipOp(_BackwardUnary):
    """``clip(x, x_min, x_max)``: ``g`` where ``x_min <= x <= x_max`` (torch passes the gradient
    at both bounds: a valid subgradient), 0 outside. With ``x_min >= x_max`` the result is
    ``x_max`` everywhere, a constant: 0 (torch passes ``g`` at ``x == x_min == x_max``, outside
    the one-sided derivatives, both 0)."""

    def derivative(self, x):
        lo = ops.convert_to_tensor(self.layer.x_min, dtype=x.dtype)
        hi = ops.convert_to_tensor(self.layer.x_max, dtype=x.dtype)
        inside = ops.logical_and(ops.greater_equal(x, lo), ops.less_equal(x, hi))
        inside = ops.logical_and(inside, ops.less(lo, hi))
        return ops.cast(inside, x.dtype)
