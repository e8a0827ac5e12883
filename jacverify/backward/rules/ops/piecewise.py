"""Rules of the piecewise ``keras.ops``.

Piecewise constant functions of floats (``sign``, ``floor``, ``ceil``, ``round``, ``trunc``,
``floor_divide``, ``angle`` and ``imag`` of real tensors) have a zero derivative wherever they
have one: they are constants of the backward pass (:class:`BackwardZeroGradientOp`). Their
jumps have no derivative; zero is what autograd gives there too.

Piecewise smooth ones get their derivative with a subgradient at the kinks: ``fabs``,
``nan_to_num``, ``mod``, ``fmod``, ``fmax``, ``fmin``, ``divide_no_nan``, ``heaviside`` (in its
value at 0), ``nextafter``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.backward.rules.ops.arithmetic import _BackwardBinary, _BackwardExtremumOp
from jacverify.backward.rules.ops.elementwise import _BackwardUnary
from jacverify.keras_internals import ops_numpy as knp

#: Float-valued operations whose derivative is zero wherever it exists (the ``*_like``
#: operations depend on their input's shape only).
ZERO_GRADIENT_OPS = (
    knp.Sign, knp.Floor, knp.Ceil, knp.Round, knp.Trunc, knp.FloorDivide, knp.Angle,
    knp.Imag, knp.ZerosLike, knp.OnesLike, knp.EmptyLike,
)


@register_backward(*ZERO_GRADIENT_OPS)
class BackwardZeroGradientOp(BackwardOperation):
    """A piecewise constant operation: a zero gradient for every input."""

    #: How the coverage table (``jacverify.ops_coverage``) lists the operations of this rule.
    coverage = "zero gradient"

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        batch = ops.shape(gradient)[0]
        zeros = [ops.zeros((batch, *dims), dtype=gradient.dtype)
                 for dims in self._runtime_dims(input)]
        return self._pack(zeros)


@register_backward(knp.FullLike)
class BackwardFullLikeOp(BackwardOperation):
    """``full_like(x, fill_value)``: 0 to ``x`` (only its shape matters), and ``g`` summed
    back to a ``fill_value`` that is a tensor of the model."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._x = self.call_argument(0, "x")
        self._fill = self.call_argument(1, "fill_value")
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)
        batch = ops.shape(gradient)[0]
        results = [ops.zeros((batch, *d), dtype=gradient.dtype) for d in dims]
        if is_input(self._fill):
            i = input_index(self._fill)
            results[i] = results[i] + reduce_to_shape(gradient, dims[i])
        return self._pack(results)


@register_backward(knp.Fabs)
class BackwardFabsOp(_BackwardUnary):
    """``fabs(x)``: ``g sign(x)`` (0 at 0, a subgradient)."""

    def derivative(self, x):
        return ops.sign(x)


@register_backward(knp.NanToNum)
class BackwardNanToNumOp(_BackwardUnary):
    """``nan_to_num(x)``: ``g`` where ``x`` is finite, 0 where it was replaced."""

    def derivative(self, x):
        return ops.cast(ops.isfinite(x), x.dtype)


@register_backward(knp.Mod)
class BackwardModOp(_BackwardBinary):
    """``mod(x1, x2) = x1 - x2 floor(x1 / x2)``: ``g`` and ``-g floor(x1 / x2)`` (at the jumps,
    where ``x1 / x2`` is an integer, the value of the piece on the right).

    The quotient's floor is ``floor_divide``'s, which decides the piece as the operation does
    (from the exact remainder): ``floor`` of the rounded quotient can be one more where it
    rounds up to an integer, and Keras rounds a float64 ``floor`` to float32 outside
    :func:`jacverify.float64_precision` (``floor(2.9999999999) = 3``, ``floor(-1e-323) = 0``).
    """

    def _partials(self, a, b, gradient):
        return gradient, -gradient * ops.cast(ops.floor_divide(a, b), gradient.dtype)


@register_backward(knp.Fmod)
class BackwardFmodOp(_BackwardBinary):
    """``fmod(x1, x2) = x1 - x2 trunc(x1 / x2)``: ``g`` and ``-g trunc(x1 / x2)``."""

    def _partials(self, a, b, gradient):
        return gradient, -gradient * ops.trunc(a / b)


@register_backward(knp.Fmax)
class BackwardFmaxOp(_BackwardExtremumOp):
    """``fmax(x1, x2)``: as ``maximum`` (half to each on a tie), and all to the other operand
    where one is NaN."""

    def _wins(self, a, b):
        return ops.logical_or(ops.greater(a, b), ops.logical_and(ops.isnan(b),
                                                                ops.logical_not(ops.isnan(a))))


@register_backward(knp.Fmin)
class BackwardFminOp(_BackwardExtremumOp):
    """``fmin(x1, x2)``: as ``minimum``, NaN operands ignored."""

    def _wins(self, a, b):
        return ops.logical_or(ops.less(a, b), ops.logical_and(ops.isnan(b),
                                                             ops.logical_not(ops.isnan(a))))


@register_backward(knp.DivideNoNan)
class BackwardDivideNoNanOp(_BackwardBinary):
    """``x1 / x2``, 0 where ``x2 == 0``: ``g / x2`` and ``-g x1 / x2^2``, both 0 there.

    Computed in the dtype the operation computes in (:func:`divide_no_nan_dtype`), where a
    divisor is zero exactly when the operation sees it zero: outside
    :func:`jacverify.float64_precision`, Keras on torch divides float64 operands in float32,
    where a divisor below float32's smallest subnormal (``5e-324``) is 0 and the operation
    returns 0, a constant there.
    """

    def _partials(self, a, b, gradient):
        dtype = divide_no_nan_dtype(a.dtype, b.dtype)
        a, b, g = (ops.cast(v, dtype) for v in (a, b, gradient))
        b = ops.broadcast_to(b, ops.shape(g))
        zero = ops.equal(b, 0.0)
        safe = ops.where(zero, ops.ones_like(b), b)
        g1 = ops.where(zero, ops.zeros_like(g), g / safe)
        return ops.cast(g1, gradient.dtype), ops.cast(-g1 * a / safe, gradient.dtype)


def divide_no_nan_dtype(x1_dtype: Any, x2_dtype: Any) -> str:
    """The dtype ``keras.ops.divide_no_nan`` computes in for operands of these dtypes: Keras'
    result type of the two and a Python float (float32 for two float64 operands on torch,
    float64 within :func:`jacverify.float64_precision`)."""
    return keras.backend.result_type(x1_dtype, x2_dtype, float)


@register_backward(knp.Heaviside)
class BackwardHeavisideOp(_BackwardBinary):
    """``heaviside(x1, x2)``: 0 in ``x1`` (a step), and ``g`` to ``x2`` where ``x1 == 0`` (the
    value there)."""

    def _partials(self, a, b, gradient):
        at_zero = ops.cast(ops.equal(ops.broadcast_to(a, ops.shape(gradient)), 0.0),
                           gradient.dtype)
        return ops.zeros_like(gradient), gradient * at_zero


@register_backward(knp.Nextafter)
class BackwardNextafterOp(_BackwardBinary):
    """``nextafter(x1, x2)``, ``x1`` moved one floating-point step towards ``x2``: ``g`` to
    ``x1`` (it follows ``x1`` up to one step) and 0 to ``x2``."""

    def _partials(self, a, b, gradient):
        return gradient, ops.zeros_like(gradient)
