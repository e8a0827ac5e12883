"""Rules of ``keras.ops.concatenate`` and ``keras.ops.stack`` (the gradient is split back)."""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import input_index, is_input
from jacverify.backward.rules.ops._base import BackwardOperation, canonical_axes
from jacverify.keras_internals import ops_numpy as knp


class _BackwardJoin(BackwardOperation):
    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        items = self.call_argument(0, "xs", None)
        if items is None:
            items = self.call_argument(0, "x", [])
        self._items = list(items)
        rank = len(self.output_dim_wo_batch) + 1
        (self._axis,) = canonical_axes(layer.axis, rank, f"{type(layer).__name__} '{layer.name}'")


@register_backward(knp.Concatenate)
class BackwardConcatenateOp(_BackwardJoin):
    """``ops.concatenate(xs, axis)``: ``g`` split along ``axis`` (constants among ``xs`` get
    nothing)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = self._dims_known()

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)
        sizes = []
        for item in self._items:
            if is_input(item):
                sizes.append(int(dims[input_index(item)][self._axis - 1]))
            else:
                sizes.append(int(np.shape(item)[self._axis]))
        cuts = list(np.cumsum(sizes)[:-1])
        pieces = ops.split(gradient, cuts, axis=self._axis) if cuts else [gradient]
        results = [None] * len(dims)
        for item, piece in zip(self._items, pieces, strict=False):
            if is_input(item):
                i = input_index(item)
                results[i] = piece if results[i] is None else results[i] + piece
        return self._pack(results)


@register_backward(knp.Stack)
class BackwardStackOp(_BackwardJoin):
    """``ops.stack(xs, axis)``: ``g`` unstacked along ``axis``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        n = len(self._items)
        pieces = ops.split(gradient, n, axis=self._axis) if n > 1 else [gradient]
        results = [None] * len(self._input_dims())
        for item, piece in zip(self._items, pieces, strict=False):
            if is_input(item):
                i = input_index(item)
                piece = ops.squeeze(piece, axis=self._axis)
                results[i] = piece if results[i] is None else results[i] + piece
        return self._pack(results)
