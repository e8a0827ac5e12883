"""Rules of the normalization functions of ``keras.ops``: ``batch_normalization``,
``layer_normalization`` (also with ``rms_scaling``), ``rms_normalization`` and ``normalize``.

The statistics and weights (``mean``, ``variance``, ``offset``, ``scale``, ``gamma``,
``beta``) are constants (arrays or variables, as in a layer's ``call``); the normalized axes
never include the batch axis. The vector-Jacobian products are the normalization layers'
(:mod:`jacverify.backward.rules.normalization`).
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.normalization._common import (
    broadcast_param,
    forward_axes,
    per_example_axes,
    rms_vjp,
    scale_by_std_vjp,
    standardize_vjp,
)
from jacverify.backward.rules.normalization.unit_normalization import l2_normalize_vjp
from jacverify.backward.rules.ops._arguments import constant_operand
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_nn as knn


def _epsilon(value) -> float:
    return keras.backend.epsilon() if value is None else float(value)


class _BackwardNormalizationOp(BackwardOperation):
    #: Whether the forward runs torch's fused kernel for contiguous axes (see
    #: :func:`~jacverify.backward.rules.normalization._common.forward_axes`).
    fused_on_torch = True

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        what = f"{type(layer).__name__} '{layer.name}'"
        fused = self.fused_on_torch and not getattr(layer, "rms_scaling", False)
        self._axes = forward_axes(layer.axis, rank, what, fused=fused)

    def vjp(self, gradient, x):
        """``g^T J(x)`` with ``g`` and ``x`` in float64."""
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        # In float64: the products cancel (``g - mean(g) - x_hat mean(g x_hat)`` is 0 for two
        # values) and float32 would leave its rounding where the derivative is 0.
        result = self.vjp(ops.cast(gradient, "float64"), ops.cast(input, "float64"))
        return ops.cast(result, gradient.dtype)

    def _weight(self, position, name, gradient, input):  # noqa: A002
        value = constant_operand(self, position, name, gradient.dtype, required=False)
        if value is None:
            return None
        return broadcast_param(value, self._axes, list(input.shape[1:]), gradient.dtype)


@register_backward(knn.BatchNorm)
class BackwardBatchNormOp(BackwardOperation):
    """``ops.batch_normalization(x, mean, variance, axis, offset, scale, epsilon)`` with
    constant statistics: ``g * scale / sqrt(variance + epsilon)`` along ``axis`` (linear)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        (self._axis,) = per_example_axes(layer.axis, rank, f"BatchNorm '{layer.name}'")
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dtype = gradient.dtype
        variance = constant_operand(self, 2, "variance", dtype)
        factor = ops.rsqrt(variance + ops.cast(self.layer.epsilon, dtype))
        scale = constant_operand(self, 4, "scale", dtype, required=False)
        if scale is not None:
            factor = factor * scale
        shape = [1] * len(gradient.shape)
        shape[self._axis] = int(factor.shape[0])
        return gradient * ops.reshape(factor, shape)


@register_backward(knn.LayerNorm)
class BackwardLayerNormOp(_BackwardNormalizationOp):
    """``ops.layer_normalization(x, gamma, beta, axis, epsilon, rms_scaling)``: the
    standardization's VJP of ``g * gamma`` (``x / sqrt(var + epsilon)``'s with
    ``rms_scaling``)."""

    def vjp(self, gradient, x):
        gamma = self._weight(1, "gamma", gradient, x)
        if gamma is not None:
            gradient = gradient * gamma
        epsilon = _epsilon(self.layer.epsilon)
        if self.layer.rms_scaling:
            return scale_by_std_vjp(gradient, x, self._axes, epsilon)
        return standardize_vjp(gradient, x, self._axes, epsilon)


@register_backward(knn.RMSNorm)
class BackwardRMSNormOp(_BackwardNormalizationOp):
    """``ops.rms_normalization(x, scale, axis, epsilon)``: ``x / sqrt(mean(x^2) + epsilon)``'s
    VJP of ``g * scale``.

    Unlike ``layer_normalization``'s ``gamma``, Keras does not reshape ``scale`` to the
    normalized axes: it multiplies by it as given, broadcast against the input's trailing
    axes (torch's ``F.rms_norm`` on continuous axes takes it as the weight of the trailing
    normalized axes, which is the same product). So does the rule."""

    def vjp(self, gradient, x):
        scale = constant_operand(self, 1, "scale", gradient.dtype, required=False)
        if scale is not None:
            gradient = gradient * scale
        return rms_vjp(gradient, x, self._axes, _epsilon(self.layer.epsilon))


@register_backward(knn.Normalize)
class BackwardNormalizeOp(_BackwardNormalizationOp):
    """``ops.normalize(x, axis, order, epsilon)``. ``order=2``: ``x * min(rsqrt(sum x^2),
    1/epsilon)``; other orders: ``x / max(|x|_p, epsilon)``, whose VJP is
    ``(g - [|x|_p > epsilon] * w <g, x> / n) / max(n, epsilon)`` with ``n = |x|_p`` and
    ``w = d n / d x = sign(x) |x|^(p-1) / n^(p-1)`` (half weight at the tie ``n == epsilon``,
    torch's convention for ``maximum``; at ``x = 0`` the derivative of ``n`` is 0)."""

    fused_on_torch = False

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if int(layer.order) != 2 and len(self._axes) != 1:
            raise ValueError(
                f"{type(self).__name__}: ops.normalize '{layer.name}' with order={layer.order} "
                f"over the axes {tuple(self._axes)} divides by a matrix norm; the rule supports "
                "vector norms (one axis) for orders other than 2."
            )

    def vjp(self, gradient, x):
        epsilon = _epsilon(self.layer.epsilon)
        order = int(self.layer.order)
        if order == 2:
            return l2_normalize_vjp(gradient, x, self._axes, epsilon)
        axes = tuple(self._axes)
        magnitude = ops.abs(x)
        norm = ops.power(ops.sum(ops.power(magnitude, order), axis=axes, keepdims=True),
                         1.0 / order)
        eps = ops.cast(epsilon, x.dtype)
        denominator = ops.maximum(norm, eps)
        weight = ops.cast(ops.greater(norm, eps), x.dtype) + 0.5 * ops.cast(
            ops.equal(norm, eps), x.dtype)
        safe = ops.where(ops.greater(norm, 0), norm, ops.ones_like(norm))
        if order == 1:
            dnorm = ops.sign(x)
        else:
            dnorm = ops.sign(x) * ops.power(magnitude / safe, order - 1)
        inner = ops.sum(gradient * x, axis=axes, keepdims=True)
        return (gradient - weight * dnorm * inner / denominator) / denominator
