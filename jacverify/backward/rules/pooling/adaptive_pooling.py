"""Rules for ``keras.layers.AdaptiveAveragePooling1D/2D/3D`` and
``AdaptiveMaxPooling1D/2D/3D``.

Output cell ``i`` of an axis of ``n`` input positions and ``o`` output cells pools the window
``[floor(i n / o), ceil((i + 1) n / o))`` (windows may overlap and differ in length by one);
a cell of a multi-axis layer pools the box that is the product of its per-axis windows. The
rules express each axis with constant matrices, so they are keras.ops only:

* average: per axis, ``A[i, j] = 1 / len_i`` on the window: ``g_x = g`` times ``A`` along every
  spatial axis (linear);
* max: per axis, a one-hot gather ``P[i, l, j]`` of the ``l``-th position of window ``i``
  (padded to the longest window): the windows of the input are gathered, their maxima found,
  and ``g`` is split equally between the positions that attain a window's maximum (torch
  gives it all to one of them; both are valid subgradients), then scattered back with the
  same matrices.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLinearLayer, BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.pooling._common import spatial_axes

_LETTERS = "defghijklmnopqrstuvwxyz"


def windows(n: int, o: int) -> list:
    """``[(start, end), ...]`` of the ``o`` adaptive windows over ``n`` positions."""
    return [(math.floor(i * n / o), math.ceil((i + 1) * n / o)) for i in range(o)]


def average_matrix(n: int, o: int) -> np.ndarray:
    matrix = np.zeros((o, n))
    for i, (start, end) in enumerate(windows(n, o)):
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def gather_matrix(n: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """``(P, valid)``: ``P[i, l, j] = 1`` when position ``j`` is the ``l``-th of window ``i``;
    ``valid[i, l]`` whether window ``i`` has an ``l``-th position."""
    spans = windows(n, o)
    longest = max(end - start for start, end in spans)
    gather = np.zeros((o, longest, n))
    valid = np.zeros((o, longest), dtype=bool)
    for i, (start, end) in enumerate(spans):
        for position, j in enumerate(range(start, end)):
            gather[i, position, j] = 1.0
            valid[i, position] = True
    return gather, valid


class _AdaptiveBase:
    def _geometry(self, input=None):  # noqa: A002
        layer = self.layer
        rank = len(layer.output_size)
        axes = spatial_axes(rank, layer.data_format)
        dims = list(self.input_dim_wo_batch)
        sizes = [dims[a - 1] for a in axes]
        if any(n is None for n in sizes) and input is not None:
            sizes = [int(input.shape[a]) for a in axes]
        return rank, axes, sizes, [int(o) for o in layer.output_size]


@register_backward(
    keras.layers.AdaptiveAveragePooling1D,
    keras.layers.AdaptiveAveragePooling2D,
    keras.layers.AdaptiveAveragePooling3D,
)
class BackwardAdaptiveAveragePooling(_AdaptiveBase, BackwardLinearLayer):
    """``g`` spread back evenly over each cell's window, axis by axis."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        _, _, sizes, _ = self._geometry()
        self.is_linear = all(n is not None for n in sizes)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        _, axes, sizes, outs = self._geometry(input)
        dtype = keras.backend.standardize_dtype(gradient.dtype)
        for axis, n, o in zip(axes, sizes, outs, strict=True):
            matrix = ops.convert_to_tensor(average_matrix(n, o), dtype=dtype)
            # An einsum (keras.ops.tensordot computes float64 in float32 on torch).
            sub = _LETTERS[: len(gradient.shape)]
            out = sub[:axis] + "z" + sub[axis + 1 :]
            gradient = ops.einsum(f"{sub},{sub[axis]}z->{out}", gradient, matrix)
        return gradient


@register_backward(
    keras.layers.AdaptiveMaxPooling1D,
    keras.layers.AdaptiveMaxPooling2D,
    keras.layers.AdaptiveMaxPooling3D,
)
class BackwardAdaptiveMaxPooling(_AdaptiveBase, BackwardNonLinearLayer):
    """``g`` to the maxima of each cell's box (split equally between tied maxima)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        rank, axes, sizes, outs = self._geometry(input)
        dtype = keras.backend.standardize_dtype(gradient.dtype)
        x = ops.cast(input, dtype)
        # x: batch "a", spatial letters, channel "c"; gathered: (o_k, l_k) per spatial axis.
        letters = list(_LETTERS)
        x_sub = ["a"] * (rank + 2)
        x_sub[1 if self.layer.data_format == "channels_first" else rank + 1] = "c"
        win_sub = list(x_sub)
        gathers, valids, mats = [], [], []
        for axis, n, o in zip(axes, sizes, outs, strict=True):
            j, i, p = letters.pop(0), letters.pop(0), letters.pop(0)
            x_sub[axis] = j
            win_sub[axis] = i + p
            gather, valid = gather_matrix(n, o)
            gathers.append(ops.convert_to_tensor(gather, dtype=dtype))
            valids.append(valid)
            mats.append(i + p + j)
        x_sub[0] = win_sub[0] = "a"
        x_str, win_str = "".join(x_sub), "".join(win_sub)
        win = ops.einsum(f"{x_str},{','.join(mats)}->{win_str}", x, *gathers)
        # Invalid window slots (shorter windows) must never win the max.
        valid = valids[0]
        for v in valids[1:]:
            valid = np.multiply.outer(valid, v)
        valid_shape = [1] * len(win.shape)
        win_axes = [k for k, c in enumerate(win_str) if c not in "ac"]
        for k, size in zip(win_axes, _interleave(outs, valids), strict=False):
            valid_shape[k] = size
        valid_t = ops.convert_to_tensor(valid.reshape(valid_shape))
        win = ops.where(valid_t, win, ops.convert_to_tensor(-np.inf, dtype=dtype))
        reduce_axes = tuple(k for k, c in enumerate(win_str) if c in "".join(m[1] for m in mats))
        peak = ops.max(win, axis=reduce_axes, keepdims=True)
        hits = ops.cast(ops.logical_and(ops.equal(win, peak), valid_t), dtype)
        share = hits / ops.sum(hits, axis=reduce_axes, keepdims=True)
        g = gradient
        for k in sorted(reduce_axes):
            g = ops.expand_dims(g, k)
        return ops.einsum(f"{win_str},{','.join(mats)}->{x_str}", g * share, *gathers)


def _interleave(outs, valids):
    """Sizes of the window axes in order: o_1, l_1, o_2, l_2, ..."""
    sizes = []
    for o, valid in zip(outs, valids, strict=True):
        sizes += [o, valid.shape[1]]
    return sizes
