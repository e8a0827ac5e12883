"""Rules for ``keras.layers.UpSampling1D``, ``UpSampling2D`` and ``UpSampling3D``.

Nearest-neighbour upsampling (``ops.repeat``) copies each element ``size`` times along each
axis: its backward sums the gradient over each block. ``UpSampling2D`` with
``interpolation="bilinear"`` or ``"bicubic"`` calls ``torch.nn.functional.interpolate``
(``align_corners=False``, no antialiasing) on the Keras torch backend; both are separable and
every output ``i * size + r`` along an axis reads the inputs ``i - P .. i + P`` (``P`` = 1 or
2) of the input replicate-padded by ``P`` (torch clamps indices at the borders), with weights
that depend only on ``r``. The rule precomputes those weights from torch's formulas and
applies their transpose: weighted sums of the ``size`` outputs of each block, ``2 P + 1``
shifted additions, and the replicate padding folded back onto the edges.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.reshaping._common import fold_replicate, pad_axis, spatial_axes

_CUBIC_A = -0.75  # torch's bicubic coefficient


def _sum_blocks(gradient, axis: int, size: int):
    """Backward of ``ops.repeat(x, size, axis)``: sum each block of ``size`` copies."""
    if size == 1:
        return gradient
    shape = list(gradient.shape)
    shape[0] = -1
    split = shape[:axis] + [shape[axis] // size, size] + shape[axis + 1 :]
    return ops.sum(ops.reshape(gradient, split), axis=axis + 1)


def _cubic_coefficients(t):
    """torch's ``get_cubic_upsample_coefficients`` for fractional offsets ``t``."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def interpolation_stencil(size: int, interpolation: str) -> np.ndarray:
    """``W[r, d]``: weight of ``xp[i + d]`` in output ``i * size + r`` of torch's
    ``interpolate(mode=interpolation, align_corners=False)`` upsampling by ``size``, where
    ``xp`` is the input replicate-padded by ``P`` (1 for bilinear, 2 for bicubic).

    torch reads ``real = (j + 0.5) / size - 0.5`` for output ``j``. Bilinear clamps ``real``
    at 0 and the second index at ``n - 1``; bicubic clamps its four indices to
    ``[0, n - 1]``. Both amount to reading a replicate-padded input with weights that depend
    only on ``r = j % size``.
    """
    half = 2 if interpolation == "bicubic" else 1
    offset = (np.arange(size) + 0.5) / size - 0.5  # real - i, in (-0.5, 0.5)
    first = np.floor(offset).astype(np.int64)  # -1 or 0
    lam = offset - first
    if interpolation == "bilinear":
        taps = np.stack([first, first + 1], axis=-1)
        weights = np.stack([1.0 - lam, lam], axis=-1)
    else:
        taps = first[:, None] + np.arange(-1, 3)[None, :]
        weights = _cubic_coefficients(lam)
    stencil = np.zeros((size, 2 * half + 1))
    rows = np.repeat(np.arange(size)[:, None], taps.shape[1], axis=1)
    np.add.at(stencil, (rows, taps + half), weights)
    return stencil


def _stencil_transpose(gradient, axis: int, stencil: np.ndarray):
    """Backward along ``axis`` of an upsampling by ``interpolation_stencil``: per input offset
    ``d``, the weighted sum of the ``size`` outputs of each block, shifted by ``d``, then the
    replicate padding folded back onto the edges."""
    size, width = stencil.shape
    half = width // 2
    shape = list(gradient.shape)
    n = shape[axis] // size
    shape[0] = -1
    blocks = ops.reshape(gradient, shape[:axis] + [n, size] + shape[axis + 1 :])
    index = [slice(None)] * len(blocks.shape)
    columns = []
    for r in range(size):
        index[axis + 1] = r
        columns.append(blocks[tuple(index)])
    padded = None
    for d in range(width):
        term = None
        for r in range(size):
            weight = float(stencil[r, d])
            if weight != 0.0:
                part = columns[r] * ops.cast(weight, gradient.dtype)
                term = part if term is None else term + part
        if term is not None:
            term = pad_axis(term, axis, d, width - 1 - d)
            padded = term if padded is None else padded + term
    return fold_replicate(padded, axis, half, half, n)


@register_backward(keras.layers.UpSampling1D)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardUpSampling1D(BackwardLinearLayer):
    """Sum the gradient over each block of ``size`` steps."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return _sum_blocks(gradient, 1, int(self.layer.size))


@register_backward(keras.layers.UpSampling2D)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardUpSampling2D(BackwardLinearLayer):
    """Block sums for ``interpolation="nearest"``; the transposed interpolation band for
    ``"bilinear"`` and ``"bicubic"``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        interpolation = layer.interpolation
        if interpolation not in ("nearest", "bilinear", "bicubic"):
            raise NotImplementedError(
                f"{type(self).__name__}: no rule for interpolation='{interpolation}' "
                "(supported: 'nearest', 'bilinear', 'bicubic')."
            )
        self._stencils = None
        if interpolation != "nearest":
            self._stencils = [interpolation_stencil(int(f), interpolation) for f in layer.size]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        axes = spatial_axes(2, self.layer.data_format)
        for i, (axis, size) in enumerate(zip(axes, self.layer.size, strict=True)):
            if self._stencils is None:
                gradient = _sum_blocks(gradient, axis, int(size))
            else:
                gradient = _stencil_transpose(gradient, axis, self._stencils[i])
        return gradient


@register_backward(keras.layers.UpSampling3D)
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardUpSampling3D(BackwardLinearLayer):
    """Sum the gradient over each ``size`` block."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        axes = spatial_axes(3, self.layer.data_format)
        for axis, size in zip(axes, self.layer.size, strict=True):
            gradient = _sum_blocks(gradient, axis, int(size))
        return gradient
