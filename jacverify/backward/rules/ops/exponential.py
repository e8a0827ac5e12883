"""Rules of the exponential and logarithmic ``keras.ops``: ``exp2``, ``expm1``, ``log1p``,
``log2``, ``log10``, ``cbrt``, ``logaddexp``, ``logaddexp2``, ``ldexp``, ``vander`` (``exp``
and ``log`` are in :mod:`.activations` and :mod:`.elementwise`)."""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, reduce_to_shape
from jacverify.backward.rules.ops.arithmetic import _BackwardBinary
from jacverify.backward.rules.ops.cumulative import inclusive_scan
from jacverify.backward.rules.ops.elementwise import _BackwardUnary
from jacverify.keras_internals import ops_numpy as knp


@register_backward(knp.Exp2)
class BackwardExp2Op(_BackwardUnary):
    """``2^x``: ``g 2^x ln 2``."""

    def derivative(self, x):
        return ops.exp2(x) * math.log(2.0)


@register_backward(knp.Expm1)
class BackwardExpm1Op(_BackwardUnary):
    """``exp(x) - 1``: ``g exp(x)``."""

    def derivative(self, x):
        return ops.exp(x)


@register_backward(knp.Log1p)
class BackwardLog1pOp(_BackwardUnary):
    """``log(1 + x)``: ``g / (1 + x)``."""

    def derivative(self, x):
        return 1.0 / (1.0 + x)


@register_backward(knp.Log2)
class BackwardLog2Op(_BackwardUnary):
    """``log2(x)``: ``g / (x ln 2)``."""

    def derivative(self, x):
        return 1.0 / (x * math.log(2.0))


@register_backward(knp.Log10)
class BackwardLog10Op(_BackwardUnary):
    """``log10(x)``: ``g / (x ln 10)``."""

    def derivative(self, x):
        return 1.0 / (x * math.log(10.0))


@register_backward(knp.Cbrt)
class BackwardCbrtOp(_BackwardUnary):
    """``cbrt(x)``: ``g / (3 cbrt(x)^2)`` (``inf`` at 0, where the slope is vertical)."""

    def derivative(self, x):
        c = ops.cbrt(x)
        return 1.0 / (3.0 * c * c)


@register_backward(knp.Logaddexp)
class BackwardLogaddexpOp(_BackwardBinary):
    """``log(exp(x1) + exp(x2))``: ``g sigmoid(x1 - x2)`` and ``g sigmoid(x2 - x1)``."""

    def _partials(self, a, b, gradient):
        w = ops.sigmoid(ops.broadcast_to(a - b, ops.shape(gradient)))
        return gradient * w, gradient * (1.0 - w)


@register_backward(knp.Logaddexp2)
class BackwardLogaddexp2Op(_BackwardBinary):
    """``log2(2^x1 + 2^x2)``: ``g sigmoid((x1 - x2) ln 2)`` and the complement."""

    def _partials(self, a, b, gradient):
        w = ops.sigmoid(ops.broadcast_to((a - b) * math.log(2.0), ops.shape(gradient)))
        return gradient * w, gradient * (1.0 - w)


@register_backward(knp.Ldexp)
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


@register_backward(knp.Vander)
class BackwardVanderOp(BackwardOperation):
    """``vander(x, N)`` of a model tensor of shape ``(batch,)`` (one value per example): row
    ``b`` holds the powers of ``x_b``; ``g'_b = sum_k g_bk p_k x_b^(p_k - 1)``. The powers are
    products of ``x`` (exact in every dtype; ``ops.power`` computes float64 in float32 on
    torch). ``N=None`` (as many columns as the batch has examples) is refused."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if layer.N is None or self._input_dims()[0]:
            raise ValueError(
                f"Vander '{layer.name}' needs a model tensor of one value per example and a "
                "given N (N=None makes as many columns as the batch has examples: its "
                "Jacobian couples the examples of a batch)."
            )
        n = int(layer.N)
        exponents = np.arange(n) if layer.increasing else np.arange(n)[::-1]
        self._exponents = exponents.astype("float64")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        n = len(self._exponents)
        x = ops.expand_dims(ops.cast(input, gradient.dtype), -1)
        # x^0, x^1, ..., x^(n-2): the derivative of x^p is p x^(p-1)
        repeated = ops.concatenate([ops.ones_like(x), ops.repeat(x, max(n - 2, 0), axis=-1)],
                                   axis=-1)[:, : max(n - 1, 1)]
        lower_powers = inclusive_scan(repeated, -1, product=True)
        lower_powers = ops.concatenate([ops.zeros_like(x), lower_powers], axis=-1)[:, :n]
        # column k holds x^p_k: its derivative is p_k x^(p_k - 1), lower_powers[p_k]
        index = ops.convert_to_tensor(self._exponents.astype("int32"))
        derivative = ops.take(lower_powers, index, axis=-1) * ops.convert_to_tensor(
            self._exponents, dtype=gradient.dtype)
        return ops.sum(gradient * derivative, axis=-1)
