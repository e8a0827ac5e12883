"""Rules of the per-example statistics ``keras.ops``: ``var``, ``std``, ``prod``,
``average``, ``amax``, ``amin``, ``ptp`` and the NaN-ignoring ``nansum``, ``nanmean``,
``nanmax``, ``nanmin``, ``nanprod``, ``nanvar``, ``nanstd`` (over axes other than the batch
axis; ``axis=None`` couples the examples of a batch and is refused)."""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.backward.rules.ops.cumulative import inclusive_scan
from jacverify.keras_internals import ops_numpy as knp


class AxesReduction(BackwardOperation):
    """A reduction of its first input over ``layer.axis``: the reduced axes, the gradient with
    the reduced axes back (size 1), and the reduced values moved to one last axis."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        rank = len(dims) + 1
        what = f"{type(layer).__name__} '{layer.name}'"
        self._axes = canonical_axes(layer.axis, rank, what)
        self._count = math.prod(int(dims[a - 1]) for a in self._axes)
        kept = [a for a in range(rank) if a not in self._axes]
        self._perm = kept + list(self._axes)
        self._inverse = [self._perm.index(a) for a in range(rank)]

    def unreduce(self, gradient):
        """``g`` with the reduced axes back as size 1 (when ``keepdims=False``)."""
        if not getattr(self.layer, "keepdims", False):
            for axis in self._axes:
                gradient = ops.expand_dims(gradient, axis)
        return gradient

    def to_last(self, x, reduced: bool = False):
        """``x`` with the reduced axes moved last and merged: ``(batch, ..., n)`` (``n = 1``
        for a ``reduced`` tensor, whose reduced axes have size 1)."""
        moved = ops.transpose(x, self._perm)
        kept_shape = list(ops.shape(moved))[: len(self._perm) - len(self._axes)]
        return ops.reshape(moved, (-1, *kept_shape[1:], 1 if reduced else self._count))

    def from_last(self, flat, like):
        """The inverse of :meth:`to_last`, to the shape of ``like``."""
        moved_shape = [ops.shape(like)[a] for a in self._perm]
        return ops.transpose(ops.reshape(flat, moved_shape), self._inverse)


@register_backward(knp.Var, knp.Nanvar)
class BackwardVarOp(AxesReduction):
    """``var(x, axis)`` (``ddof=0``): ``2 g (x - mean) / n``; ``nanvar`` over the non-NaN
    entries (0 at the NaN ones)."""

    def moments(self, x):
        """``(x - mean, count)``, the centred values 0 at NaN entries for the NaN variants."""
        if isinstance(self.layer, knp.Nanvar | knp.Nanstd):
            kept = ops.cast(ops.logical_not(ops.isnan(x)), x.dtype)
            x = ops.where(ops.isnan(x), ops.zeros_like(x), x)
            count = ops.sum(kept, axis=self._axes, keepdims=True)
        else:
            kept = None
            count = ops.cast(self._count, x.dtype)
        mean = ops.sum(x, axis=self._axes, keepdims=True) / count
        centred = x - mean if kept is None else (x - mean) * kept
        return centred, count

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        centred, count = self.moments(ops.cast(input, gradient.dtype))
        return self.unreduce(gradient) * 2.0 * centred / count


@register_backward(knp.Std, knp.Nanstd)
class BackwardStdOp(BackwardVarOp):
    """``std(x, axis)``: ``g (x - mean) / (n std)``; 0 where ``std == 0`` (a subgradient: the
    standard deviation is a cone there)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        centred, count = self.moments(ops.cast(input, gradient.dtype))
        std = ops.sqrt(ops.sum(centred * centred, axis=self._axes, keepdims=True) / count)
        flat = ops.equal(std, 0.0)
        scale = ops.where(flat, ops.zeros_like(std), 1.0 / (count * ops.where(flat, 1.0, std)))
        return self.unreduce(gradient) * centred * scale


def exclusive_products(x):
    """``prod_{k != i} x_k`` along the last axis, exact with zeros (products of the entries
    before and after each one)."""
    ones = ops.ones_like(x[..., :1])
    before = inclusive_scan(ops.concatenate([ones, x[..., :-1]], axis=-1), -1, product=True)
    reversed_x = ops.flip(x, axis=-1)
    after = inclusive_scan(ops.concatenate([ones, reversed_x[..., :-1]], axis=-1), -1,
                           product=True)
    return before * ops.flip(after, axis=-1)


@register_backward(knp.Prod, knp.Nanprod)
class BackwardProdOp(AxesReduction):
    """``prod(x, axis)``: ``g prod_{k != i} x_k`` (exact with zeros); ``nanprod`` reads NaN as 1
    (and gives it 0)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        nan = ops.isnan(x)
        if isinstance(self.layer, knp.Nanprod):
            x = ops.where(nan, ops.ones_like(x), x)
        others = self.from_last(exclusive_products(self.to_last(x)), x)
        grad = self.unreduce(gradient) * others
        if isinstance(self.layer, knp.Nanprod):
            grad = ops.where(nan, ops.zeros_like(grad), grad)
        return grad


@register_backward(knp.Nansum, knp.Nanmean)
class BackwardNansumOp(AxesReduction):
    """``nansum``: ``g`` at the non-NaN entries; ``nanmean``: divided by their count."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kept = ops.cast(ops.logical_not(ops.isnan(input)), gradient.dtype)
        grad = self.unreduce(gradient) * kept
        if isinstance(self.layer, knp.Nanmean):
            grad = grad / ops.sum(kept, axis=self._axes, keepdims=True)
        return grad


def extremum_share(x, extremum, axes):
    """1/count at the positions attaining ``extremum`` over ``axes``, 0 elsewhere."""
    hits = ops.cast(ops.equal(x, extremum), x.dtype)
    return hits / ops.sum(hits, axis=axes, keepdims=True)


@register_backward(knp.Amax, knp.Amin, knp.Nanmax, knp.Nanmin)
class BackwardAmaxOp(AxesReduction):
    """``amax``/``amin`` (and the NaN-ignoring ``nanmax``/``nanmin``): ``g`` split equally
    between the positions attaining the extremum (torch's convention, a subgradient)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        largest = isinstance(self.layer, knp.Amax | knp.Nanmax)
        if isinstance(self.layer, knp.Nanmax | knp.Nanmin):
            fill = -np.inf if largest else np.inf
            x = ops.where(ops.isnan(x), ops.full_like(x, fill), x)
        reduce = ops.max if largest else ops.min
        extremum = reduce(x, axis=self._axes, keepdims=True)
        return self.unreduce(gradient) * extremum_share(x, extremum, self._axes)


@register_backward(knp.Ptp)
class BackwardPtpOp(AxesReduction):
    """``ptp(x, axis) = max - min``: ``g`` shared by the maxima, ``-g`` by the minima."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        top = ops.max(x, axis=self._axes, keepdims=True)
        bottom = ops.min(x, axis=self._axes, keepdims=True)
        share = extremum_share(x, top, self._axes) - extremum_share(x, bottom, self._axes)
        return self.unreduce(gradient) * share


@register_backward(knp.Average)
class BackwardAverageOp(AxesReduction):
    """``average(x, axis, weights)`` over one axis: ``g w / sum(w)`` to ``x`` and
    ``g (x - average) / sum(w)`` to weights that are a tensor of the model. Weighted averages
    must be over the last axis with weights broadcasting to ``x`` (Keras's torch backend
    divides by the weights' sum over the last axis whatever ``axis`` is)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if len(self._axes) != 1:
            raise ValueError(f"Average '{layer.name}': one axis expected, got {layer.axis!r}.")
        self._x = self.call_argument(0, "x")
        self._weights = self.call_argument(1, "weights")
        rank = len(self._input_dims()[0]) + 1
        if self._weights is not None and self._axes[0] != rank - 1:
            raise NotImplementedError(
                f"Average '{layer.name}': weighted averages are supported over the last axis "
                f"only (got axis={layer.axis!r})."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        inputs = self._inputs(input)
        x = ops.cast(inputs[input_index(self._x)], gradient.dtype)
        if self._weights is None:
            w = ops.ones_like(x)
        else:
            w = ops.broadcast_to(self.operand(self._weights, inputs, x.dtype), ops.shape(x))
        total = ops.sum(w, axis=self._axes, keepdims=True)
        g = self.unreduce(gradient)
        results = [None] * len(inputs)
        results[input_index(self._x)] = g * w / total
        if is_input(self._weights):
            # x_i - average = sum_j w_j (x_i - x_j) / sum(w): exactly 0 where every x_j is
            # x_i (the subtraction of the average would leave rounding there).
            pairwise = ops.expand_dims(x, -1) - ops.expand_dims(x, -2)
            centred = ops.sum(pairwise * ops.expand_dims(w, -2), axis=-1) / total
            results[input_index(self._weights)] = g * centred / total
        return self._pack(results)
