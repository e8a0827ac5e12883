"""Rules of the per-example reductions ``keras.ops.sum``, ``mean``, ``max``, ``min``
(over non-batch axes)."""

from __future__ import annotations

import math

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_numpy as knp


class _BackwardReduction(BackwardOperation):
    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        rank = len(self._input_dims()[0]) + 1
        self._axes = canonical_axes(layer.axis, rank, f"{type(layer).__name__} '{layer.name}'")

    def _unreduce(self, gradient):
        """The gradient with the reduced axes back (size 1) when ``keepdims=False``."""
        if not self.layer.keepdims:
            for axis in self._axes:
                gradient = ops.expand_dims(gradient, axis)
        return gradient


@register_backward(knp.Sum)
class BackwardSumOp(_BackwardReduction):
    """``sum(x, axis)``: ``g`` broadcast back over the summed axes."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()

    def _scale(self, dims):
        return 1.0

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)[0]
        gradient = self._unreduce(gradient)
        scale = self._scale(dims)
        if scale != 1.0:
            gradient = gradient * ops.cast(scale, gradient.dtype)
        return ops.broadcast_to(gradient, (ops.shape(gradient)[0], *dims))


@register_backward(knp.Mean)
class BackwardMeanOp(BackwardSumOp):
    """``mean(x, axis)``: ``g / n`` broadcast back over the ``n`` averaged positions."""

    def _scale(self, dims):
        return 1.0 / math.prod(int(dims[a - 1]) for a in self._axes)


class _BackwardExtremumReduction(_BackwardReduction):
    """``max``/``min`` over axes: ``g`` split equally between the positions attaining the
    extremum (torch's own ``amax``/``amin`` convention; a valid subgradient)."""

    def _extremum(self, x):
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self.layer.initial is not None:
            raise NotImplementedError(
                f"{type(self).__name__}: '{self.layer.name}' has initial="
                f"{self.layer.initial!r}; not supported."
            )
        x = ops.cast(input, gradient.dtype)
        extremum = self._extremum(x)
        hits = ops.cast(ops.equal(x, extremum), gradient.dtype)
        count = ops.sum(hits, axis=self._axes, keepdims=True)
        return self._unreduce(gradient) * hits / count


@register_backward(knp.Max)
class BackwardMaxOp(_BackwardExtremumReduction):
    """``max(x, axis)``."""

    def _extremum(self, x):
        return ops.max(x, axis=self._axes, keepdims=True)


@register_backward(knp.Min)
class BackwardMinOp(_BackwardExtremumReduction):
    """``min(x, axis)``."""

    def _extremum(self, x):
        return ops.min(x, axis=self._axes, keepdims=True)
