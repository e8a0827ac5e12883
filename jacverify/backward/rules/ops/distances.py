"""Rules of ``keras.ops.cdist`` (Euclidean distances between the rows of two tensors) and
``keras.ops.norm`` (vector norms along one per-example axis, Frobenius and nuclear norms of
matrices along two).

Kinks take torch's values where they are subgradients: the gradient of a norm at 0 is 0, an
infinity norm's gradient is shared evenly between tied maxima.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._arguments import accumulate, optional_operand
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes, reduce_to_shape
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath


@register_backward(kmath.CDist)
class BackwardCDistOp(BackwardOperation):
    """``d[p, r] = |x_p - y_r|``: with the unit vectors ``u_pr = (x_p - y_r) / d[p, r]`` (0
    where ``d = 0``, a subgradient), ``dx_p = sum_r g[p, r] u_pr``, ``dy_r = -sum_p g[p, r]
    u_pr``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        # In float64: ``x_p - y_r`` cancels for nearby points.
        dtype = gradient.dtype
        gradient = ops.cast(gradient, "float64")
        inputs = self._inputs(input)
        x, ix = optional_operand(self, 0, "x", inputs, "float64")
        y, iy = optional_operand(self, 1, "y", inputs, "float64")
        diff = ops.expand_dims(x, -2) - ops.expand_dims(y, -3)
        distance = ops.sqrt(ops.sum(diff * diff, axis=-1, keepdims=True))
        positive = ops.greater(distance, 0)
        # The unit vectors, not ``(g / d) x - (g / d) y``: near coincident points ``g / d`` is
        # huge and the two products cancel to a few ulps of it.
        unit = ops.where(positive, diff / ops.where(positive, distance, 1), 0)
        d_x = ops.einsum("...pr,...prm->...pm", gradient, unit)
        d_y = -ops.einsum("...pr,...prm->...rm", gradient, unit)
        results = [None] * len(inputs)
        dims = self._runtime_dims(input)
        if ix is not None:
            accumulate(results, ix, ops.cast(reduce_to_shape(d_x, dims[ix]), dtype))
        if iy is not None:
            accumulate(results, iy, ops.cast(reduce_to_shape(d_y, dims[iy]), dtype))
        return self._pack(results)


def _vector_norm(x, order, axes):
    """``|x|_order`` over ``axes`` (kept), in ``x``'s dtype (``ops.norm`` computes float64
    norms in float32 on torch)."""
    magnitude = ops.abs(x)
    if order in (None, 2):
        return ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))
    if order == float("inf"):
        return ops.max(magnitude, axis=axes, keepdims=True)
    if order == float("-inf"):
        return ops.min(magnitude, axis=axes, keepdims=True)
    if order == 0:
        return ops.sum(ops.cast(ops.not_equal(x, 0), x.dtype), axis=axes, keepdims=True)
    order = float(order)
    return ops.power(ops.sum(ops.power(magnitude, order), axis=axes, keepdims=True), 1 / order)


def _vector_norm_derivative(x, order, axis, norm):
    """``d|x|_order / dx`` along ``axis`` (``norm`` kept along it)."""
    positive = ops.greater(norm, 0)
    safe = ops.where(positive, norm, 1)
    if order in (None, 2):
        return ops.where(positive, x / safe, 0)
    if order == 1:
        return ops.sign(x)
    if order == 0:
        return ops.zeros_like(x)
    if order in (float("inf"), float("-inf")):
        hits = ops.cast(ops.equal(ops.abs(x), norm), x.dtype)
        return ops.sign(x) * hits / ops.sum(hits, axis=axis, keepdims=True)
    order = float(order)
    value = ops.sign(x) * ops.power(ops.abs(x) / safe, order - 1)
    return ops.where(positive, value, 0)


@register_backward(klinalg.Norm)
class BackwardNormOp(BackwardOperation):
    """``norm(x, ord, axis, keepdims)`` for vector norms (one axis: ``ord`` None/2, 1, inf,
    -inf, 0, any p) and the Frobenius (``None``/``'fro'``) and nuclear (``'nuc'``: ``U V^T``
    from the SVD, full rank) norms of matrices (two axes); other matrix norms are refused."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        self._axes = canonical_axes(layer.axis, rank, f"Norm '{layer.name}'")
        order = layer.ord
        if len(self._axes) == 2 and order not in (None, "fro", "nuc"):
            raise ValueError(
                f"{type(self).__name__}: matrix norm ord={order!r} of '{layer.name}' has no "
                "rule (supported: None/'fro', 'nuc', and vector norms along one axis)."
            )
        if len(self._axes) > 2:
            raise ValueError(f"{type(self).__name__}: norm over {len(self._axes)} axes.")

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        if not self.layer.keepdims:
            for axis in self._axes:
                gradient = ops.expand_dims(gradient, axis)
        order = self.layer.ord
        if len(self._axes) == 2 and order == "nuc":
            return gradient * self._nuclear_derivative(x)
        if len(self._axes) == 2:
            order = 2  # Frobenius: the 2-norm of all the matrix's entries
        norm = _vector_norm(x, order, self._axes)
        return gradient * _vector_norm_derivative(x, order, self._axes, norm)

    def _nuclear_derivative(self, x):
        first, second = self._axes
        moved = ops.moveaxis(x, (first, second), (-2, -1))
        u, _, vt = ops.svd(moved, full_matrices=False)
        return ops.moveaxis(ops.einsum("...ik,...kj->...ij", u, vt), (-2, -1), (first, second))
