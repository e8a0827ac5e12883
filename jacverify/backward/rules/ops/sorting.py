"""Rules of the sort-based ``keras.ops``: ``sort``, ``median``, ``quantile``, ``percentile``.

Each output is a fixed combination of the sorted values, so its gradient goes to the entries
that landed at those sorted positions. Where values tie, the sort's own order picks which
entry is which: one of the one-sided derivatives, a valid subgradient.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
from keras.src.ops import numpy as knp

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import is_input
from jacverify.backward.rules.ops.cumulative import _BackwardAlongAxis
from jacverify.backward.rules.ops.statistics import AxesReduction


def unsort(gradient_of_sorted, x, axis: int):
    """The gradient of ``sort(x, axis)`` sent back to ``x``'s order."""
    order = ops.argsort(x, axis=axis)
    return ops.take_along_axis(gradient_of_sorted, ops.argsort(order, axis=axis), axis=axis)


@register_backward(knp.Sort)
@keras.saving.register_keras_serializable(package="jacverify")
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
    if isinstance(layer, knp.Median):
        return "linear"
    probe = type(layer)(axis=-1, method=method)
    scale = 100.0 if isinstance(layer, knp.Percentile) else 1.0
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
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardQuantileOp(AxesReduction):
    """``quantile(x, q, axis)`` / ``percentile`` / ``median`` with one constant ``q``: ``g``
    times each sorted value's weight in the quantile, sent back to the entries holding them.
    An array of ``q`` puts its axis before the batch axis (refused)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if isinstance(layer, knp.Median):
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
            q = float(q) / (100.0 if isinstance(layer, knp.Percentile) else 1.0)
        self._weights = quantile_weights(q, self._count, effective_method(layer, method))
        self.is_linear = False

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        flat = self.to_last(x)
        weights = ops.convert_to_tensor(self._weights, dtype=gradient.dtype)
        of_sorted = self.to_last(self.unreduce(gradient), reduced=True) * weights
        return self.from_last(unsort(of_sorted, flat, -1), x)
