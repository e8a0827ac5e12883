"""Adjoints of the sampling of images at real coordinates, as Keras' torch backend samples
them in ``map_coordinates`` (order 0: the nearest pixel, order 1: linear interpolation along
each axis; out-of-range indices fixed by the fill mode, or read as the fill value in
``"constant"`` mode).

The sample is ``sum_corners weight(corner) * value(corner)``: linear in the image (its adjoint
adds each sample's gradient back to the pixels it read, weighted), and for order 1 piecewise
linear in the coordinates (the derivative of the weights; at integer coordinates, where the
interpolation has a kink, the derivative of the piece above, as ``floor`` picks it).
"""

from __future__ import annotations

import itertools
import math

from keras import ops

from jacverify.backward.rules._rounding import exact_floor


def _fixed_index(index, size: int, fill_mode: str):
    """The index actually read, as the backend fixes an out-of-range one."""
    if fill_mode in ("constant", "nearest"):
        return ops.clip(index, 0, size - 1)
    if fill_mode == "wrap":
        return ops.mod(index, size)
    if fill_mode == "mirror":
        return _mirror(index, size)
    if fill_mode == "reflect":
        return ops.floor_divide(_mirror(2 * index + 1, 2 * size + 1) - 1, 2)
    raise ValueError(f"unknown fill_mode {fill_mode!r}")


def _mirror(index, size: int):
    s = size - 1
    return ops.abs(ops.mod(index + s, 2 * s) - s)


def _nodes(coordinate, order: int):
    """``(index, weight, d weight / d coordinate)`` of each interpolation node of one axis."""
    if order == 0:
        index = ops.cast(ops.round(coordinate), "int32")
        one = ops.ones_like(coordinate)
        return [(index, one, 0.0 * one)]
    if order != 1:
        raise NotImplementedError("the sampling rules cover order 0 and order 1")
    lower = exact_floor(coordinate)
    upper_weight = coordinate - lower
    index = ops.cast(lower, "int32")
    one = ops.ones_like(coordinate)
    return [(index, 1.0 - upper_weight, -one), (index + 1, upper_weight, one)]


def sampling_vjp(images, coordinates: list, gradient, *, order: int, fill_mode: str,
                 fill_value: float, with_coordinates: bool):
    """Gradients of ``sum(g * sample(images, coordinates))`` per example.

    Args:
        images: ``(batch, *spatial)``, the sampled arrays (one per example).
        coordinates: one ``(batch, *out)`` tensor per spatial axis: where each sample is read.
        gradient: ``(batch, *out)``, the upstream gradient of the samples.
        order, fill_mode, fill_value: as ``keras.ops.image.map_coordinates``.
        with_coordinates: also return the gradients of the coordinates.

    Returns:
        ``(g_images, g_coordinates)`` (``g_coordinates`` a list, or ``None``).
    """
    spatial = [int(s) for s in images.shape[1:]]
    count = math.prod(spatial)
    batch = int(images.shape[0])
    strides = [math.prod(spatial[d + 1:]) for d in range(len(spatial))]
    flat_images = ops.reshape(images, (batch, count))
    g = ops.reshape(gradient, (batch, -1))
    coordinates = [ops.reshape(ops.cast(c, g.dtype), (batch, -1)) for c in coordinates]
    per_axis = []
    for coordinate, size in zip(coordinates, spatial, strict=True):
        nodes = []
        for index, weight, slope in _nodes(coordinate, order):
            fixed = _fixed_index(index, size, fill_mode)
            valid = ops.logical_and(index >= 0, index < size) if fill_mode == "constant" \
                else None
            nodes.append((fixed, valid, weight, slope))
        per_axis.append(nodes)
    offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * count, -1)
    g_images = None
    g_coordinates = [ops.zeros_like(c) for c in coordinates] if with_coordinates else None
    for corner in itertools.product(*per_axis):
        flat = sum(fixed * stride for (fixed, _, _, _), stride in zip(corner, strides,
                                                                         strict=True))
        valid = None
        for _, v, _, _ in corner:
            if v is not None:
                valid = v if valid is None else ops.logical_and(valid, v)
        weights = [w for _, _, w, _ in corner]
        weight = math.prod(weights[1:], start=weights[0])
        kept = weight if valid is None else ops.where(valid, weight, 0.0)
        # A scatter adds the values of repeated indices (segment_sum computes float64 sums
        # in float32 on torch in Keras 3.15).
        part = ops.scatter(ops.reshape(flat + offsets, (-1, 1)), ops.reshape(g * kept, (-1,)),
                           (batch * count,))
        g_images = part if g_images is None else g_images + part
        if with_coordinates:
            value = ops.take_along_axis(flat_images, flat, axis=1)
            if valid is not None:
                value = ops.where(valid, value, ops.cast(fill_value, value.dtype))
            for d, (_, _, _, slope) in enumerate(corner):
                others = [w for e, w in enumerate(weights) if e != d]
                factor = math.prod(others[1:], start=others[0]) if others else 1.0
                g_coordinates[d] = g_coordinates[d] + g * slope * factor * value
    g_images = ops.reshape(g_images, (batch, *spatial))
    if with_coordinates:
        out = list(gradient.shape[1:])
        g_coordinates = [ops.reshape(c, (batch, *out)) for c in g_coordinates]
    return g_images, g_coordinates
