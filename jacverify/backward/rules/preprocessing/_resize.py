"""Image resizing as Keras does it on torch (``F.interpolate`` after an optional crop or pad
to the target aspect ratio), as per-axis interpolation matrices: a resize is separable, so
``out = R_h x R_w^T`` per channel and its vector-Jacobian product is ``R_h^T g R_w``.

The matrices follow torch's ``F.interpolate`` (``align_corners=False``):

* ``bilinear``: source ``s = max(scale (d + 0.5) - 0.5, 0)``, weights ``1 - t`` and ``t`` on
  ``floor(s)`` and the next position (the last one repeated at the edge);
* ``nearest`` (torch's ``nearest-exact``): ``min(floor(scale (d + 0.5)), n - 1)``;
* ``bicubic``: Keys' cubic convolution with ``A = -0.75`` on ``floor(s) - 1 .. floor(s) + 2``
  (``s`` not clamped), edge positions repeated;
* ``antialias=True`` (bilinear, bicubic): the separable filter of torch's ``*_aa`` kernels,
  triangle or cubic with ``a = -0.5``, stretched by the scale when downsampling, normalized.

``scale = n_in / n_out``.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops


def _cubic(x, a):
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def interpolation_matrix(n_in: int, n_out: int, interpolation: str,
                         antialias: bool = False) -> np.ndarray:
    """``R`` of shape ``(n_out, n_in)``: ``out = R @ x`` along one axis."""
    matrix = np.zeros((n_out, n_in))
    scale = n_in / n_out
    if interpolation == "nearest":
        for d in range(n_out):
            matrix[d, min(int(math.floor((d + 0.5) * scale)), n_in - 1)] = 1.0
        return matrix
    if interpolation not in ("bilinear", "bicubic"):
        raise NotImplementedError(f"interpolation '{interpolation}' is not supported.")
    if antialias:
        size = 2 if interpolation == "bilinear" else 4
        support = size / 2 * scale if scale >= 1.0 else size / 2
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for d in range(n_out):
            center = scale * (d + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), n_in)
            weights = []
            for j in range(lo, hi):
                x = (j - center + 0.5) * invscale
                weights.append(max(0.0, 1.0 - abs(x)) if interpolation == "bilinear"
                               else _cubic(x, -0.5))
            total = sum(weights)
            for j, w in zip(range(lo, hi), weights, strict=False):
                matrix[d, j] += w / total if total != 0.0 else 0.0
        return matrix
    for d in range(n_out):
        source = scale * (d + 0.5) - 0.5
        if interpolation == "bilinear":
            source = max(source, 0.0)
            i0 = int(source)
            i1 = i0 + 1 if i0 < n_in - 1 else i0
            t = source - i0
            matrix[d, i0] += 1.0 - t
            matrix[d, i1] += t
        else:
            i = math.floor(source)
            t = source - i
            a = -0.75
            weights = [_cubic(t + 1.0, a), _cubic(t, a), _cubic(1.0 - t, a), _cubic(2.0 - t, a)]
            for k, w in enumerate(weights):
                matrix[d, min(max(i - 1 + k, 0), n_in - 1)] += w
    return matrix


def aspect_box(height, width, target_height, target_width, mode):
    """For ``mode`` "crop": ``(h_start, w_start, h_size, w_size)`` of the crop box; for "pad":
    ``(h_pad, w_pad)`` added on both sides of each axis (Keras's torch ``resize``)."""
    if mode == "crop":
        crop_h = max(min(height, int(float(width * target_height) / target_width)), 1)
        crop_w = max(min(width, int(float(height * target_width) / target_height)), 1)
        return (int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w)
    pad_h = max(height, int(float(width * target_height) / target_width))
    pad_w = max(width, int(float(height * target_width) / target_height))
    return int(float(pad_h - height) / 2), int(float(pad_w - width) / 2)


def resize_vjp(gradient, *, in_size, out_size, interpolation, antialias, data_format,
               crop_to_aspect_ratio=False, pad_to_aspect_ratio=False):
    """``g^T J`` of Keras's ``resize`` of a batch of images of spatial size ``in_size``."""
    height, width = (int(n) for n in in_size)
    target_h, target_w = (int(n) for n in out_size)
    box = (0, 0, height, width)
    pads = (0, 0)
    if crop_to_aspect_ratio:
        box = aspect_box(height, width, target_h, target_w, "crop")
    elif pad_to_aspect_ratio:
        pads = aspect_box(height, width, target_h, target_w, "pad")
    src_h = box[2] + 2 * pads[0]
    src_w = box[3] + 2 * pads[1]
    dtype = gradient.dtype
    r_h = ops.convert_to_tensor(interpolation_matrix(src_h, target_h, interpolation, antialias),
                                dtype=dtype)
    r_w = ops.convert_to_tensor(interpolation_matrix(src_w, target_w, interpolation, antialias),
                                dtype=dtype)
    if data_format == "channels_last":
        result = ops.einsum("bhwc,hi,wj->bijc", gradient, r_h, r_w)
        h_axis, w_axis = 1, 2
    else:
        result = ops.einsum("bchw,hi,wj->bcij", gradient, r_h, r_w)
        h_axis, w_axis = 2, 3
    if pads != (0, 0):
        index = [slice(None)] * 4
        index[h_axis] = slice(pads[0], pads[0] + height)
        index[w_axis] = slice(pads[1], pads[1] + width)
        result = result[tuple(index)]
    if box != (0, 0, height, width):
        widths = [[0, 0] for _ in range(4)]
        widths[h_axis] = [box[0], height - box[0] - box[2]]
        widths[w_axis] = [box[1], width - box[1] - box[3]]
        result = ops.pad(result, widths)
    return result


def repeats_first_row(operation, dims: tuple, data_format: str) -> bool:
    """Whether ``operation`` (a ``Resize`` or a ``Resizing`` layer), as the backend computes
    it, gives every output row (of two or more) the values of the first, read from its output
    on a ramp image of shape ``dims`` (without the batch axis; every value different).

    Torch's anti-aliased bilinear and bicubic interpolation (torch 2.13, CPU) does so when the
    output is one pixel wide and its height differs from the input's, for images laid out
    channels first in memory (Keras passes channels-first images as they are, and
    channels-last ones as a permuted view, which torch computes right when there are several
    channels): its forward repeats the first row while its backward follows the
    interpolation, so that torch autograd is not the derivative of the forward there. The rule
    differentiates the forward as computed on this layout."""
    image = np.arange(int(np.prod(dims)), dtype="float32").reshape(1, *dims) + 1.0
    out = np.asarray(ops.convert_to_numpy(operation(ops.convert_to_tensor(image))))[0]
    h_axis = 0 if data_format == "channels_last" else 1
    if out.shape[h_axis] < 2:
        return False
    first = np.take(out, [0], axis=h_axis)
    return bool(np.all(out == first))


def gather_rows_into_first(gradient, h_axis: int):
    """The gradient of a function that copies its first row into every row: each row's
    gradient summed into the first, zeros in the others (``h_axis`` counted from the end)."""
    total = ops.sum(gradient, axis=h_axis, keepdims=True)
    rest = int(gradient.shape[h_axis]) - 1
    zeros_shape = list(gradient.shape)
    zeros_shape[h_axis] = rest
    zeros = ops.zeros(tuple(zeros_shape), dtype=gradient.dtype)
    return ops.concatenate([total, zeros], axis=h_axis)
