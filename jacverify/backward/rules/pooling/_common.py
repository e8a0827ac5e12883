"""Helpers shared by the pooling rules: layouts, Keras' "same" padding, and axis surgery.

Keras on torch pools in ``channels_first`` layout. With ``padding="same"`` it computes, per
spatial axis, ``total = max(0, (ceil(n / s) - 1) * s + k - n)`` (``k - 1`` when ``s == 1``),
``left = total // 2`` and ``right = total - left``. When every axis has ``left == right`` it
passes ``left`` to torch's pooling (implicit padding: ``-inf`` for max pooling, not counted in
averages, ``count_include_pad=False``); otherwise it pads every axis explicitly with
``mode="replicate"`` and pools without padding, so replicated edge values *are* counted in
averages and their gradient flows back to the edge element.
"""

from __future__ import annotations

from dataclasses import dataclass

from keras import ops

from jacverify.backward.rules.reshaping._common import (  # noqa: F401 - re-exported
    fold_replicate,
    pad_axis,
    spatial_axes,
    take,
)


@dataclass(frozen=True)
class PoolingGeometry:
    """Static geometry of one pooling call (spatial axes only)."""

    spatial: tuple  # input spatial sizes n
    pool_size: tuple  # k
    strides: tuple  # s
    pads: tuple  # ((left, right), ...) per spatial axis
    replicate: bool  # padding applied explicitly with mode="replicate"

    @property
    def padded(self) -> tuple:
        """Spatial sizes after padding (implicit or explicit)."""
        return tuple(
            n + left + right for n, (left, right) in zip(self.spatial, self.pads, strict=True)
        )

    @property
    def output(self) -> tuple:
        return tuple(
            (p - k) // s + 1
            for p, k, s in zip(self.padded, self.pool_size, self.strides, strict=True)
        )


def same_padding_length(n: int, k: int, s: int) -> tuple:
    """``(left, right)`` padding of Keras' torch backend for ``padding="same"`` pooling."""
    if s == 1:
        total = k - 1
    else:
        out = (n + s - 1) // s
        total = max(0, (out - 1) * s + k - n)
    left = total // 2
    return left, total - left


def pooling_geometry(layer, spatial) -> PoolingGeometry:
    """The geometry of ``layer`` (a Keras pooling layer) on inputs of spatial sizes ``spatial``."""
    spatial = tuple(int(n) for n in spatial)
    pool_size = tuple(int(k) for k in layer.pool_size)
    strides = tuple(int(s) for s in layer.strides)
    if str(layer.padding).lower() == "same":
        pads = tuple(
            same_padding_length(n, k, s)
            for n, k, s in zip(spatial, pool_size, strides, strict=True)
        )
        replicate = not all(left == right for left, right in pads)
    else:
        pads = tuple((0, 0) for _ in spatial)
        replicate = False
    return PoolingGeometry(spatial, pool_size, strides, pads, replicate)


def spatial_sizes(dims_wo_batch, n_spatial: int, data_format: str):
    """Spatial sizes from a shape without the batch axis (``None`` if one is unknown)."""
    dims = list(dims_wo_batch)
    sizes = dims[1:] if data_format == "channels_first" else dims[:n_spatial]
    if any(d is None for d in sizes):
        return None
    return tuple(int(d) for d in sizes)


def to_channels_first(t, n_spatial: int):
    """``(batch, *spatial, channels)`` -> ``(batch, channels, *spatial)``."""
    return ops.transpose(t, (0, n_spatial + 1, *range(1, n_spatial + 1)))


def to_channels_last(t, n_spatial: int):
    """``(batch, channels, *spatial)`` -> ``(batch, *spatial, channels)``."""
    return ops.transpose(t, (0, *range(2, n_spatial + 2), 1))


def fit_axis(t, axis: int, length: int):
    """Crop or zero-pad ``t`` at the end of ``axis`` to ``length``."""
    current = int(t.shape[axis])
    if current > length:
        return take(t, axis, 0, length)
    return pad_axis(t, axis, 0, length - current)


def unpad(t, axes, geometry: PoolingGeometry):
    """Map a gradient on the padded input back to the input, along ``axes``."""
    for axis, n, (left, right) in zip(axes, geometry.spatial, geometry.pads, strict=True):
        if geometry.replicate:
            t = fold_replicate(t, axis, left, right, n)
        elif left or right:
            t = take(t, axis, left, left + n)
    return t
