"""Rules of the elementwise binary ``keras.ops``: ``add``, ``subtract``, ``multiply``,
``divide``/``true_divide``, ``power``, ``maximum``, ``minimum`` (and the ``+ - * / **``
operators on Keras tensors, which call them).

Each operand is a tensor of the model (with the batch axis) or a constant (a Python number or
an array, broadcast NumPy-style). Each tensor operand receives ``g * d(out)/d(operand)``,
summed over the axes along which it was broadcast.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.keras_internals import ops_numpy as knp


class _BackwardBinary(BackwardOperation):
    """``out = f(x1, x2)`` elementwise; subclasses give the partial derivatives."""

    #: Whether the partial derivative with respect to a tensor operand is constant when the
    #: other operand is a constant (Multiply, Divide by a constant): the rule is then linear.
    linear_when_other_is_constant = False
    #: Whether the partials never depend on the operands (Add, Subtract).
    always_linear = False

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        x1 = self.call_argument(0, "x1")
        x2 = self.call_argument(1, "x2")
        self._operands = [x1, x2]
        tensors = [v for v in self._operands if is_input(v)]
        constants_only_elsewhere = len(tensors) == 1 and self.linear_when_other_is_constant
        self.is_linear = self._dims_known() and (self.always_linear or constants_only_elsewhere)
        self._needs = tuple(is_input(v) for v in self._operands)

    def _partials(self, a, b, gradient):
        """``(g * d out/d x1, g * d out/d x2)``; ``a``, ``b`` the operands (tensors)."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        inputs = self._inputs(input)
        dims = self._runtime_dims(input)
        if self.always_linear:
            values = [None, None]
        elif self.is_linear:
            values = [None if is_input(v) else self.operand(v, None, dtype)
                      for v in self._operands]
        else:
            values = [self.operand(v, inputs, dtype) for v in self._operands]
        partials = self._partials(values[0], values[1], gradient)
        results = [None] * len(dims)
        for operand, partial in zip(self._operands, partials, strict=False):
            if not is_input(operand):
                continue
            i = input_index(operand)
            grad = reduce_to_shape(partial, dims[i])
            results[i] = grad if results[i] is None else results[i] + grad
        return self._pack(results)


@register_backward(knp.Add)
class BackwardAddOp(_BackwardBinary):
    """``x1 + x2``: ``g`` to each tensor operand."""

    always_linear = True

    def _partials(self, a, b, gradient):
        return gradient, gradient


@register_backward(knp.Subtract)
class BackwardSubtractOp(_BackwardBinary):
    """``x1 - x2``: ``g`` and ``-g``."""

    always_linear = True

    def _partials(self, a, b, gradient):
        return gradient, -gradient


@register_backward(knp.Multiply)
class BackwardMultiplyOp(_BackwardBinary):
    """``x1 * x2``: ``g * x2`` and ``g * x1`` (linear when one factor is a constant)."""

    linear_when_other_is_constant = True

    def _partials(self, a, b, gradient):
        return (None if b is None else gradient * b), (None if a is None else gradient * a)


@register_backward(knp.Divide, knp.TrueDivide)
class BackwardDivideOp(_BackwardBinary):
    """``x1 / x2``: ``g / x2`` and ``-g * x1 / x2**2`` (linear for a constant divisor)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        x2 = self._operands[1]
        self.is_linear = self._dims_known() and not is_input(x2)

    def _partials(self, a, b, gradient):
        g1 = gradient / b
        g2 = None if a is None else -g1 * a / b
        return g1, g2


@register_backward(knp.Power)
class BackwardPowerOp(_BackwardBinary):
    """``x1 ** x2``: ``g * x2 * x1**(x2 - 1)`` and ``g * x1**x2 * log(x1)``.

    For an exponent ``x2`` that is a constant, ``d/dx1`` is computed as ``x2 * x1**(x2 - 1)``
    (0 at ``x1 = 0`` for ``x2 > 1``, as torch), and is 0 where ``x2 == 0`` (``x1**0 == 1``;
    the formula would give ``0 * inf`` at ``x1 = 0``). The derivative in the exponent is taken
    where ``x1 > 0`` (elsewhere ``x1**x2`` is not differentiable in ``x2`` or not real): 0 there.
    """

    def _partials(self, a, b, gradient):
        g1 = None
        if self._needs[0]:
            g1 = ops.where(ops.equal(b, 0), ops.zeros_like(gradient),
                           gradient * b * ops.power(a, b - 1.0))
        if not self._needs[1]:
            return g1, None
        positive = ops.greater(a, 0)
        safe = ops.where(positive, a, ops.ones_like(a))
        g2 = ops.where(positive, gradient * ops.power(a, b) * ops.log(safe),
                       ops.zeros_like(gradient))
        return g1, g2


class _BackwardExtremumOp(_BackwardBinary):
    """``maximum``/``minimum``: ``g`` to the operand holding the extremum, half to each on a tie
    (torch's convention, a valid subgradient)."""

    def _wins(self, a, b):
        raise NotImplementedError

    def _partials(self, a, b, gradient):
        a, b = ops.broadcast_to(a, ops.shape(gradient)), ops.broadcast_to(b, ops.shape(gradient))
        dtype = gradient.dtype
        win = ops.cast(self._wins(a, b), dtype)
        tie = ops.cast(ops.equal(a, b), dtype)
        w1 = win + 0.5 * tie
        return gradient * w1, gradient * (1.0 - w1)


@register_backward(knp.Maximum)
class BackwardMaximumOp(_BackwardExtremumOp):
    """``maximum(x1, x2)`` (``ops.relu``-like clamps with a constant included)."""

    def _wins(self, a, b):
        return ops.greater(a, b)


@register_backward(knp.Minimum)
class BackwardMinimumOp(_BackwardExtremumOp):
    """``minimum(x1, x2)``."""

    def _wins(self, a, b):
        return ops.less(a, b)
