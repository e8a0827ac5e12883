"""Rules of the sort-based ``keras.ops``: ``sort``, ``median``, ``quantile``, ``percentile``
and their NaN-ignoring variants.

Each output is a fixed combination of the sorted values, so its gradient goes to the entries
that landed at those sorted positions. Where values tie, the sort's own order picks which
entry is which: one of the one-sided derivatives, a valid subgradient.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import is_input
from jacverify.backward.rules.ops.cumulative import _BackwardAlongAxis
from jacverify.backward.rules.ops.statistics import AxesReduction
from jacverify.keras_internals import ops_numpy as knp


def unsort(gradient_of_sorted, x, axis: int):
    """The gradient of ``sort(x, axis)`` sent back to ``x``'s order."""
    order = ops.argsort(x, axis=axis)
    return ops.take_along_axis(gradient_of_sorted, ops.argsort(order, axis=axis), axis=axis)


@register_backward(knp.Sort)
class BackwardSortOp(_BackwardAlongAxis):
    """``sort(x, axis)``: ``g`` permuted back by the inverse of the sorting permutation."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return unsort(gradient, ops.cast(input, gradient.dtype), self._axis)


def quantile_weights(q: float, n: int, method: str) -> np.ndarray:
    """Weights of the ``n`` sorted values in the ``q`` quantile (NumPy's methods)."""
    position = q * (n - 1)
    low, high = math.floor(position), math.ceil(position)
    weights = np.zeros(n)
    if method == "linear":
        weights[low] += 1.0 - (position - low)
        weights[high] += position - low
    elif method == "lower":
        weights[low] = 1.0
    elif method == "higher":
        weights[high] = 1.0
    elif method == "midpoint":
        weights[low] += 0.5
        weights[high] += 0.5
    elif method == "nearest":
        weights[int(np.round(position))] = 1.0
    else:
        raise ValueError(f"unknown quantile method {method!r}.")
    return weights


def effective_method(layer, method: str) -> str:
    """The interpolation ``layer``'s class computes (some Keras versions ignore ``method``
    in graphs), read from two probes on ``[0, 1]``."""
    if isinstance(layer, knp.Median | knp.Nanmedian):
        return "linear"
    probe = type(layer)(axis=-1, method=method)
    scale = 100.0 if isinstance(layer, knp.Percentile | knp.Nanpercentile) else 1.0
    values = tuple(
        float(ops.convert_to_numpy(probe(np.array([[0.0, 1.0]]), q * scale))[0])
        for q in (0.3, 0.8)
    )
    known = {(0.3, 0.8): "linear", (0.0, 0.0): "lower", (1.0, 1.0): "higher",
             (0.5, 0.5): "midpoint", (0.0, 1.0): "nearest"}
    for key, name in known.items():
        if np.allclose(values, key):
            return name
    raise ValueError(f"{type(layer).__name__} '{layer.name}': unknown interpolation {values}.")


@register_backward(knp.Quantile, knp.Percentile, knp.Median)
class BackwardQuantileOp(AxesReduction):
    """``quantile(x, q, axis)`` / ``percentile`` / ``median`` with one constant ``q``: ``g``
    times each sorted value's weight in the quantile, sent back to the entries holding them.
    An array of ``q`` puts its axis before the batch axis (refused)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if isinstance(layer, knp.Median | knp.Nanmedian):
            q, method = 0.5, "linear"
        else:
            q = self.call_argument(1, "q")
            method = layer.method
            if is_input(q):
                raise NotImplementedError(
                    f"{type(layer).__name__} '{layer.name}': q is a tensor of the model; "
                    "only a constant q is supported."
                )
            if np.ndim(q) != 0:
                raise ValueError(
                    f"{type(layer).__name__} '{layer.name}' takes several q: their axis comes "
                    "before the batch axis, which a backward rule cannot express. Call it "
                    "once per q."
                )
            percent = isinstance(layer, knp.Percentile | knp.Nanpercentile)
            q = float(q) / (100.0 if percent else 1.0)
        self._weights = quantile_weights(q, self._count, effective_method(layer, method))
        self.is_linear = False

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        flat = self.to_last(x)
        weights = ops.convert_to_tensor(self._weights, dtype=gradient.dtype)
        of_sorted = self.to_last(self.unreduce(gradient), reduced=True) * weights
        return self.from_last(unsort(of_sorted, flat, -1), x)


@register_backward(knp.Nanquantile, knp.Nanpercentile, knp.Nanmedian)
class BackwardNanquantileOp(BackwardQuantileOp):
    """``nanquantile`` / ``nanpercentile`` / ``nanmedian``: as ``quantile`` over the non-NaN
    entries of each row, whose number varies from row to row (NaN entries get 0; a row of NaN
    only gives 0 everywhere)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if isinstance(layer, knp.Nanmedian):
            self._q, self._method = 0.5, "linear"
        else:
            scale = 100.0 if isinstance(layer, knp.Nanpercentile) else 1.0
            self._q = float(self.call_argument(1, "q")) / scale
            self._method = effective_method(layer, layer.method)

    def _weights_per_row(self, count, n: int, dtype):
        """The weight of each sorted position in each row's quantile, ``(..., n)``."""
        position = self._q * (count - 1.0)
        low, high = ops.floor(position), ops.ceil(position)
        frac = position - low
        if self._method == "lower":
            high, frac = low, ops.zeros_like(frac)
        elif self._method == "higher":
            low, frac = high, ops.zeros_like(frac)
        elif self._method == "midpoint":
            frac = ops.where(ops.equal(low, high), ops.zeros_like(frac), 0.5 * ops.ones_like(frac))
        elif self._method == "nearest":
            low = high = ops.round(position)
            frac = ops.zeros_like(frac)
        weights = (_one_hot_at(low, n, dtype) * (1.0 - frac)
                   + _one_hot_at(high, n, dtype) * frac)
        return weights * ops.cast(ops.greater(count, 0.0), dtype)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        flat = self.to_last(x)
        nan = ops.isnan(flat)
        count = ops.sum(ops.cast(ops.logical_not(nan), gradient.dtype), axis=-1, keepdims=True)
        keys = ops.where(nan, ops.full_like(flat, np.inf), flat)  # NaN sorted last
        weights = self._weights_per_row(count, self._count, gradient.dtype)
        of_sorted = self.to_last(self.unreduce(gradient), reduced=True) * weights
        grad = unsort(of_sorted, keys, -1)
        return self.from_last(ops.where(nan, ops.zeros_like(grad), grad), x)


def _one_hot_at(position, n: int, dtype):
    """One-hot rows (``(..., n)``) of the positions ``(..., 1)`` (clipped into the row)."""
    index = ops.cast(ops.clip(position, 0.0, float(n - 1)), "int32")
    return ops.squeeze(ops.one_hot(index, n, dtype=dtype), axis=-2)
