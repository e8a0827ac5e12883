"""Rules of the trigonometric and hyperbolic ``keras.ops``: ``sin``, ``cos``, ``tan``,
``arcsin``, ``arccos``, ``arctan``, ``sinh``, ``cosh``, ``arcsinh``, ``arccosh``, ``arctanh``,
``sinc``, ``deg2rad``, ``rad2deg``, and the binary ``arctan2`` and ``hypot``."""

from __future__ import annotations

import math

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.backward.rules.ops.arithmetic import _BackwardBinary
from jacverify.backward.rules.ops.elementwise import _BackwardUnary
from jacverify.keras_internals import ops_numpy as knp


@register_backward(knp.Sin)
class BackwardSinOp(_BackwardUnary):
    """``sin(x)``: ``g cos(x)``."""

    def derivative(self, x):
        return ops.cos(x)


@register_backward(knp.Cos)
class BackwardCosOp(_BackwardUnary):
    """``cos(x)``: ``-g sin(x)``."""

    def derivative(self, x):
        return -ops.sin(x)


@register_backward(knp.Tan)
class BackwardTanOp(_BackwardUnary):
    """``tan(x)``: ``g (1 + tan(x)^2)``."""

    def derivative(self, x):
        t = ops.tan(x)
        return 1.0 + t * t


@register_backward(knp.Arcsin)
class BackwardArcsinOp(_BackwardUnary):
    """``arcsin(x)``: ``g / sqrt(1 - x^2)`` (``inf`` at ``|x| = 1``, NaN outside, as torch)."""

    def derivative(self, x):
        return ops.rsqrt(1.0 - x * x)


@register_backward(knp.Arccos)
class BackwardArccosOp(_BackwardUnary):
    """``arccos(x)``: ``-g / sqrt(1 - x^2)``."""

    def derivative(self, x):
        return -ops.rsqrt(1.0 - x * x)


@register_backward(knp.Arctan)
class BackwardArctanOp(_BackwardUnary):
    """``arctan(x)``: ``g / (1 + x^2)``."""

    def derivative(self, x):
        return 1.0 / (1.0 + x * x)


@register_backward(knp.Sinh)
class BackwardSinhOp(_BackwardUnary):
    """``sinh(x)``: ``g cosh(x)``."""

    def derivative(self, x):
        return ops.cosh(x)


@register_backward(knp.Cosh)
class BackwardCoshOp(_BackwardUnary):
    """``cosh(x)``: ``g sinh(x)``."""

    def derivative(self, x):
        return ops.sinh(x)


@register_backward(knp.Arcsinh)
class BackwardArcsinhOp(_BackwardUnary):
    """``arcsinh(x)``: ``g / sqrt(x^2 + 1)``."""

    def derivative(self, x):
        return ops.rsqrt(x * x + 1.0)


@register_backward(knp.Arccosh)
class BackwardArccoshOp(_BackwardUnary):
    """``arccosh(x)``: ``g / sqrt((x - 1)(x + 1))`` (``inf`` at 1, NaN below)."""

    def derivative(self, x):
        return ops.rsqrt((x - 1.0) * (x + 1.0))


@register_backward(knp.Arctanh)
class BackwardArctanhOp(_BackwardUnary):
    """``arctanh(x)``: ``g / (1 - x^2)``."""

    def derivative(self, x):
        return 1.0 / (1.0 - x * x)


#: Below this |x|, sinc' is summed from its Taylor series (the closed form cancels there).
_SINC_SERIES_BELOW = 0.25
#: Taylor coefficients of sinc'(x) = sum_k c_k x^(2k-1), k = 1..10: enough for float64 there.
_SINC_SERIES = tuple(
    (-1) ** k * 2 * k * math.pi ** (2 * k) / math.factorial(2 * k + 1) for k in range(1, 11)
)


@register_backward(knp.Sinc)
class BackwardSincOp(_BackwardUnary):
    """``sinc(x) = sin(pi x) / (pi x)``: ``g (cos(pi x) - sinc(x)) / x``; near 0, where that
    difference cancels, its Taylor series (0 at ``x = 0``)."""

    def derivative(self, x):
        small = ops.less(ops.abs(x), _SINC_SERIES_BELOW)
        safe = ops.where(small, ops.ones_like(x), x)
        closed = (ops.cos(math.pi * safe) - ops.sinc(safe)) / safe
        near = ops.where(small, x, ops.zeros_like(x))
        square = near * near
        series = ops.zeros_like(x)
        for coefficient in reversed(_SINC_SERIES):
            series = series * square + coefficient
        return ops.where(small, series * near, closed)


class _BackwardScaleOp(BackwardOperation):
    """``c x`` for a fixed ``c``: ``c g``."""

    factor = 1.0

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.cast(self.factor, gradient.dtype)


@register_backward(knp.Deg2rad)
class BackwardDeg2radOp(_BackwardScaleOp):
    """``deg2rad(x)``: ``g pi / 180``."""

    factor = math.pi / 180.0


@register_backward(knp.Rad2deg)
class BackwardRad2degOp(_BackwardScaleOp):
    """``rad2deg(x)``: ``g 180 / pi``."""

    factor = 180.0 / math.pi


@register_backward(knp.Arctan2)
class BackwardArctan2Op(_BackwardBinary):
    """``arctan2(x1, x2)``: ``g x2 / r^2`` and ``-g x1 / r^2`` with ``r^2 = x1^2 + x2^2``,
    computed with both scaled by ``max(|x1|, |x2|)`` so that ``r^2`` does not underflow (0 at
    the origin, where arctan2 jumps; torch gives NaN there)."""

    def _partials(self, a, b, gradient):
        a, b = ops.broadcast_to(a, ops.shape(gradient)), ops.broadcast_to(b, ops.shape(gradient))
        a_s, b_s, origin = _scaled(a, b)
        s = ops.where(ops.greater(ops.abs(a), ops.abs(b)), ops.abs(a), ops.abs(b))
        s = ops.where(origin, ops.ones_like(s), s)
        denominator = ops.where(origin, ops.ones_like(s), s * (a_s * a_s + b_s * b_s))
        zero = ops.zeros_like(gradient)
        # The products first: a zero operand gives 0 even where 1 / denominator overflows.
        return (ops.where(origin, zero, gradient * b_s / denominator),
                ops.where(origin, zero, -gradient * a_s / denominator))


@register_backward(knp.Hypot)
class BackwardHypotOp(_BackwardBinary):
    """``hypot(x1, x2) = sqrt(x1^2 + x2^2)``: ``g x1 / h`` and ``g x2 / h`` (at most ``|g|``,
    computed with both scaled by ``max(|x1|, |x2|)``); 0 at the origin (a subgradient of the
    cone there)."""

    def _partials(self, a, b, gradient):
        a, b = ops.broadcast_to(a, ops.shape(gradient)), ops.broadcast_to(b, ops.shape(gradient))
        a_s, b_s, origin = _scaled(a, b)
        h = ops.sqrt(a_s * a_s + b_s * b_s)
        scale = ops.where(origin, ops.zeros_like(h), gradient / h)
        return scale * a_s, scale * b_s


def _scaled(a, b):
    """``(a / s, b / s, s == 0)`` with ``s = max(|a|, |b|)`` (1 where both are 0)."""
    s = ops.where(ops.greater(ops.abs(a), ops.abs(b)), ops.abs(a), ops.abs(b))
    origin = ops.equal(s, 0.0)
    s = ops.where(origin, ops.ones_like(s), s)
    return a / s, b / s, origin
