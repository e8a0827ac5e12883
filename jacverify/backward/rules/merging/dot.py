"""Rule for ``keras.layers.Dot``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.merging.base_merge import MergeRuleMixin

_FREE_LETTERS = "bcdefghijklmnopqrstuvwxy"  # "a" is the batch axis, "z" the contracted one


def _l2_normalize(x, axis: int):
    """Keras's ``ops.normalize(x, axis)``: ``x * min(rsqrt(sum(x**2)), 1 / epsilon)``.

    Returns the normalized ``x``, the (capped) inverse norm and the weight of the uncapped
    branch in the derivative: 1 below the cap, 0 above, 1/2 exactly at it (torch's convention
    for ``minimum`` ties; any weight in [0, 1] is a valid subgradient there).
    """
    cap = 1.0 / keras.config.epsilon()
    inv_norm = ops.rsqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    # Not ops.minimum: Keras's type promotion turns float64 into float32 there.
    capped = ops.where(ops.less(inv_norm, cap), inv_norm, ops.cast(cap, x.dtype))
    weight = ops.cast(ops.less(inv_norm, cap), x.dtype) + 0.5 * ops.cast(
        ops.equal(inv_norm, cap), x.dtype
    )
    return x * capped, capped, weight


def _l2_normalize_vjp(gradient, normalized, inv_norm, weight, axis: int):
    """``g^T J`` of :func:`_l2_normalize`: ``(g - w * x_n * <x_n, g>) / |x|``."""
    projection = ops.sum(normalized * gradient, axis=axis, keepdims=True)
    return inv_norm * (gradient - weight * normalized * projection)


@register_backward(keras.layers.Dot)
class BackwardDot(MergeRuleMixin, BackwardNonLinearLayer):
    """``out[b, X, Y] = sum_k x[b, X, k] y[b, Y, k]`` (``k`` at each input's ``axes``):
    ``gx[b, X, k] = sum_Y g[b, X, Y] y[b, Y, k]`` and ``gy[b, Y, k] = sum_X g[b, X, Y]
    x[b, X, k]``, as einsums. With ``normalize=True`` the inputs are L2-normalized along their
    axes first, and each gradient goes through the normalization's vector-Jacobian product.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._merge_dims()
        if len(dims) != 2:
            raise ValueError(
                f"{type(self).__name__}: a Dot layer has 2 inputs, got shapes {dims}."
            )
        ranks = [len(d) + 1 for d in dims]
        axes = layer.axes
        if isinstance(axes, int):
            axes = [axes % r for r in ranks] if axes < 0 else [axes, axes]
        else:
            axes = [a % r if a < 0 else a for a, r in zip(axes, ranks, strict=True)]
        self.dot_axes = [int(a) for a in axes]
        letters = iter(_FREE_LETTERS)
        subscripts, free = [], []
        for rank, axis in zip(ranks, self.dot_axes, strict=True):
            sub = "a"
            for position in range(1, rank):
                if position == axis:
                    sub += "z"
                else:
                    letter = next(letters)
                    sub += letter
                    free.append(letter)
            subscripts.append(sub)
        self._x_sub, self._y_sub = subscripts
        self._g_sub = "a" + "".join(free)
        # With no free axis left, Keras returns shape (batch, 1), not (batch,).
        self._flat_output = not free

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x, y = (ops.cast(t, gradient.dtype) for t in self._merge_inputs(input))
        ax, ay = self.dot_axes
        if self.layer.normalize:
            x, inv_x, w_x = _l2_normalize(x, ax)
            y, inv_y, w_y = _l2_normalize(y, ay)
        if self._flat_output:
            gradient = ops.reshape(gradient, (-1,))
        gx = ops.einsum(f"{self._g_sub},{self._y_sub}->{self._x_sub}", gradient, y)
        gy = ops.einsum(f"{self._g_sub},{self._x_sub}->{self._y_sub}", gradient, x)
        if self.layer.normalize:
            gx = _l2_normalize_vjp(gx, x, inv_x, w_x, ax)
            gy = _l2_normalize_vjp(gy, y, inv_y, w_y, ay)
        return [gx, gy]
