"""Rules of the cumulative ``keras.ops``: ``cumsum``, ``cumprod``, ``nancumsum``,
``nancumprod``, ``diff``, ``trapezoid`` (along one axis other than the batch axis)."""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import give_automatic_config
from jacverify.keras_internals import ops_numpy as knp


class _BackwardAlongAxis(BackwardOperation):
    """An operation along ``layer.axis`` (``axis=None`` flattens the batch axis: refused)."""

    axis_attribute = "axis"

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        what = f"{type(layer).__name__} '{layer.name}'"
        (self._axis,) = canonical_axes(getattr(layer, self.axis_attribute), rank, what)


def inclusive_scan(x, axis: int, product: bool = False):
    """Cumulative sums (or products) of ``x`` along ``axis`` by doubling (``log2 n`` shifted
    adds), in ``x``'s dtype: ``ops.cumsum``/``ops.cumprod`` compute float64 in float32 on the
    torch backend (Keras's type promotion maps 64-bit dtypes to 32-bit)."""
    n = int(x.shape[axis])
    rank = len(x.shape)
    shift = 1
    while shift < n:
        keep = [slice(None)] * rank
        keep[axis] = slice(0, n - shift)
        widths = [[0, 0] for _ in range(rank)]
        widths[axis] = [shift, 0]
        shifted = ops.pad(x[tuple(keep)], widths, constant_values=1.0 if product else 0.0)
        x = x * shifted if product else x + shifted
        shift *= 2
    return x


def reverse_cumsum(gradient, axis: int):
    """``sum_{j >= i} g_j`` along ``axis``: the transpose of a cumulative sum."""
    return ops.flip(inclusive_scan(ops.flip(gradient, axis=axis), axis), axis=axis)


@register_backward(knp.Cumsum)
class BackwardCumsumOp(_BackwardAlongAxis):
    """``cumsum(x, axis)``: the reversed cumulative sum of ``g``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return reverse_cumsum(gradient, self._axis)


@register_backward(knp.Nancumsum)
class BackwardNancumsumOp(_BackwardAlongAxis):
    """``nancumsum(x, axis)``: as ``cumsum``, 0 at the NaN entries (they count as 0)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kept = ops.cast(ops.logical_not(ops.isnan(input)), gradient.dtype)
        return reverse_cumsum(gradient, self._axis) * kept


def cumprod_vjp(gradient, x, axis: int):
    """``g^T J`` of ``cumprod(x, axis)``, exact with zeros in ``x``:
    ``dP_j/dx_i = prod_{k <= j, k != i} x_k`` for ``j >= i`` (cumulative products of ``x``
    with ``x_i`` replaced by 1, one per ``i``)."""
    x = ops.moveaxis(x, axis, -1)
    g = ops.moveaxis(gradient, axis, -1)
    n = int(x.shape[-1])
    eye = ops.eye(n, dtype=x.dtype)
    # without[..., i, k] = x_k for k != i, 1 for k == i
    without = ops.expand_dims(x, -2) * (1.0 - eye) + eye
    partial = inclusive_scan(without, -1, product=True)
    upper = ops.convert_to_tensor(np.triu(np.ones((n, n))), dtype=x.dtype)
    grad = ops.einsum("...j,...ij->...i", g, partial * upper)
    return ops.moveaxis(grad, -1, axis)


@register_backward(knp.Cumprod)
class BackwardCumprodOp(_BackwardAlongAxis):
    """``cumprod(x, axis)``: ``g_i' = sum_{j >= i} g_j prod_{k <= j, k != i} x_k`` (exact where
    ``x`` has zeros; memory quadratic in the axis' length)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return cumprod_vjp(gradient, ops.cast(input, gradient.dtype), self._axis)


@register_backward(knp.Nancumprod)
class BackwardNancumprodOp(_BackwardAlongAxis):
    """``nancumprod(x, axis)``: as ``cumprod`` with NaN entries read as 1 (and 0 there)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        nan = ops.isnan(x)
        filled = ops.where(nan, ops.ones_like(x), x)
        grad = cumprod_vjp(gradient, filled, self._axis)
        return ops.where(nan, ops.zeros_like(grad), grad)


def _pad_axis(x, axis: int, before: int, after: int):
    widths = [[0, 0] for _ in x.shape]
    widths[axis] = [before, after]
    return ops.pad(x, widths)


@register_backward(knp.Diff)
class BackwardDiffOp(_BackwardAlongAxis):
    """``diff(x, n, axis)``: ``n`` times the transpose of one difference,
    ``g'_i = g_{i-1} - g_i`` (``g`` taken as 0 outside its range)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        for _ in range(int(self.layer.n)):
            gradient = (_pad_axis(gradient, self._axis, 1, 0)
                        - _pad_axis(gradient, self._axis, 0, 1))
        return gradient


@register_backward(knp.Trapezoid)
class BackwardTrapezoidOp(_BackwardAlongAxis):
    """``trapezoid(y, x, dx, axis)``: ``g`` times each sample's weight, half the spacing on
    each side (spacings from the constant sample points ``x``, or ``dx``)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True
        n = int(self._input_dims()[0][self._axis - 1])
        if layer.x is not None:
            points = np.asarray(ops.convert_to_numpy(layer.x), dtype="float64")
            spacing = np.diff(points)
            if spacing.ndim != 1:
                raise NotImplementedError(
                    f"Trapezoid '{layer.name}': only one-dimensional sample points x are "
                    "supported."
                )
            if not isinstance(layer.x, (list, tuple)):
                # Keras' config of the operation raises for an array x, so the backward
                # model (which holds the operation) could not be saved: record x as a list.
                give_automatic_config(
                    layer, {"x": points.tolist(), "dx": layer.dx, "axis": layer.axis})
        else:
            spacing = np.full(max(n - 1, 0), float(layer.dx))
        weights = np.zeros(n)
        weights[:-1] += spacing / 2.0
        weights[1:] += spacing / 2.0
        self._weights = weights

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        rank = len(self._input_dims()[0]) + 1
        shape = [1] * rank
        shape[self._axis] = len(self._weights)
        weights = ops.convert_to_tensor(self._weights.reshape(shape), dtype=gradient.dtype)
        return ops.expand_dims(gradient, self._axis) * weights
