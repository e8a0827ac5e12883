"""``keras.ops.image.perspective_transform`` on every image and channel of a batch at once.

Keras' torch backend samples a perspective transform image by image and, within an image,
channel by channel, in a Python loop: one ``map_coordinates`` call per image and channel. A
check evaluates the layer on thousands of input rows (the finite differences' batches), so
that loop made the three ``PerspectiveTransform`` configurations of a whole-registry check
more than a tenth of its time.

:func:`perspective_transform_batched` computes the same thing for the whole batch with one
gather per interpolation node: the homography is Keras' own (its
``compute_homography_matrix``), the sample coordinates, the interpolation nodes and weights,
the constant fill, the products and their sum are the same floating-point operations in the
same order as Keras' per-channel ones, element by element, so the values are equal bit for
bit (the gradients with respect to the images sum the same products, in another order when
nodes share a pixel: equal up to rounding).

:func:`batched_perspective_transform` is the block in which Keras' backend computes
``perspective_transform`` so, for the calls it can (finite images and points, 3-D or 4-D
images, points for one image or for each, ``"nearest"`` or ``"bilinear"``, on the CPU, without
autograd on the images: the finite differences' evaluations); anything else, autograd
references included, is Keras' own computation. The first call of each
configuration (images' shape without the batch, dtype, points, interpolation, fill value and
data format) computes both and compares them: a configuration where they are not equal stays
with Keras, the others are computed batched at every call, the first included, so that what a
call returns never depends on the calls made before it in the process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from jacverify import keras_internals
from jacverify.check.checked_shortcut import CheckedShortcut
from jacverify.shared_switch import SharedSwitch

__all__ = ["batched_perspective_transform", "perspective_transform_batched"]

#: Keras' backend image function this module stands in for.
BACKEND_FUNCTION = "perspective_transform"
#: The interpolation order of each ``interpolation`` Keras' torch backend accepts.
ORDERS = {"nearest": 0, "bilinear": 1}

#: Per configuration: whether the batched computation equalled Keras' on its first call.
_shortcut = CheckedShortcut()


def _nodes(coordinate: torch.Tensor, order: int) -> list[tuple[torch.Tensor, Any]]:
    """The interpolation nodes of ``coordinate`` along one axis: (index, weight) pairs."""
    if order == 0:
        return [(torch.round(coordinate).to(torch.int32), 1)]
    lower = torch.floor(coordinate)
    upper_weight = coordinate - lower
    index = lower.to(torch.int32)
    return [(index, 1 - upper_weight), (index + 1, upper_weight)]


def _sample(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, order: int,
            fill_value: Any) -> torch.Tensor:
    """Every channel of ``images`` ``(batch, height, width, channels)`` read at ``rows``,
    ``cols`` ``(batch, height, width)``, outside the image ``fill_value``."""
    batch, height, width, _ = images.shape
    image_index = torch.arange(batch, device=images.device).reshape(batch, 1, 1)
    terms = []
    for row, row_weight in _nodes(rows, order):
        row_valid = (row >= 0) & (row < height)
        row = row.clip(0, height - 1)
        for col, col_weight in _nodes(cols, order):
            valid = (row_valid & (col >= 0) & (col < width)).unsqueeze(-1)
            value = images[image_index, row, col.clip(0, width - 1)]
            contribution = torch.where(valid, value, fill_value)
            weight = row_weight * col_weight
            if isinstance(weight, torch.Tensor):
                weight = weight.unsqueeze(-1)
            terms.append(weight * contribution)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total.to(images.dtype)


def perspective_transform_batched(images: torch.Tensor, start_points: Any, end_points: Any,
                                  interpolation: str = "bilinear", fill_value: Any = 0,
                                  data_format: str | None = None) -> torch.Tensor:
    """``keras.ops.image.perspective_transform`` (Keras' torch backend, ``fill_mode``
    constant) computed on all images and channels at once; ``images`` is a 3-D or 4-D torch
    tensor, the points ``(4, 2)`` or ``(n, 4, 2)`` with ``n`` 1 or the batch size."""
    data_format = keras_internals.standardize_data_format(data_format)
    if interpolation not in ORDERS:
        raise ValueError(f"perspective_transform_batched: interpolation={interpolation!r} is "
                         f"not one of {sorted(ORDERS)}; call Keras' perspective_transform.")
    dtype = images.dtype
    start = keras_internals.torch_convert_to_tensor(start_points, dtype=dtype)
    end = keras_internals.torch_convert_to_tensor(end_points, dtype=dtype)
    single = images.ndim == 3
    if single:
        images = images.unsqueeze(0)
    if data_format == "channels_first":
        images = images.permute((0, 2, 3, 1))
    batch, height, width, _ = images.shape
    transforms = keras_internals.torch_homography_matrix(
        start.reshape(-1, 4, 2), end.reshape(-1, 4, 2))
    if transforms.shape[0] not in (1, batch):
        raise ValueError(f"perspective_transform_batched: {transforms.shape[0]} sets of points "
                         f"for {batch} images; give one set, or one per image.")
    grid_x, grid_y = torch.meshgrid(torch.arange(width, dtype=dtype, device=images.device),
                                    torch.arange(height, dtype=dtype, device=images.device),
                                    indexing="xy")
    a0, a1, a2, a3, a4, a5, a6, a7 = (transforms[:, k].reshape(-1, 1, 1) for k in range(8))
    denominator = a6 * grid_x + a7 * grid_y + 1.0
    cols = (a0 * grid_x + a1 * grid_y + a2) / denominator
    rows = (a3 * grid_x + a4 * grid_y + a5) / denominator
    if transforms.shape[0] != batch:
        rows, cols = rows.expand(batch, -1, -1), cols.expand(batch, -1, -1)
    output = _sample(images, rows, cols, ORDERS[interpolation], fill_value)
    if data_format == "channels_first":
        output = output.permute((0, 3, 1, 2))
    return output.squeeze(0) if single else output


def _points_key(points: Any) -> tuple | None:
    """The points as a hashable key, ``None`` when they are not finite numbers."""
    if isinstance(points, torch.Tensor):
        if points.requires_grad:
            return None
        points = points.detach().cpu().numpy()
    try:
        array = np.asarray(points, dtype="float64")
    except (TypeError, ValueError):
        return None
    if array.shape[-2:] != (4, 2) or array.ndim not in (2, 3) or not np.isfinite(array).all():
        return None
    return array.shape, array.tobytes()


def _configuration(images: Any, start_points: Any, end_points: Any, interpolation: Any,
                   fill_value: Any, data_format: Any) -> tuple | None:
    """The configuration key of a call the batched computation takes, else ``None``."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
        return None
    if images.requires_grad and torch.is_grad_enabled():
        return None
    if not images.is_floating_point() or images.device.type != "cpu":
        return None
    if interpolation not in ORDERS or not isinstance(fill_value, (int, float)):
        return None
    points = _points_key(start_points), _points_key(end_points)
    if None in points or points[0][0] != points[1][0]:
        return None
    count = points[0][0][0] if len(points[0][0]) == 3 else 1
    batch = images.shape[0] if images.ndim == 4 else 1
    if count not in (1, batch):
        return None
    data_format = keras_internals.standardize_data_format(data_format)
    return (tuple(images.shape[1:]), images.ndim, str(images.dtype), *points, interpolation,
            float(fill_value), data_format)


def _equal(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether two results are the same tensor, bit for bit."""
    return (got.shape == expected.shape and got.dtype == expected.dtype
            and torch.equal(got.detach(), expected.detach()))


def _finite(images: torch.Tensor) -> bool:
    return bool(torch.isfinite(images.detach()).all())


def _batched(keras_function: Callable) -> Callable:
    """Keras' backend ``perspective_transform`` with the batched computation in front."""

    def perspective_transform(images, start_points, end_points, interpolation="bilinear",
                              fill_value=0, data_format=None):
        arguments = (images, start_points, end_points, interpolation, fill_value,
                     data_format)
        key = _configuration(*arguments)
        if key is not None and not _finite(images):
            key = None
        return _shortcut(key, lambda: perspective_transform_batched(*arguments),
                         lambda: keras_function(*arguments), _equal)

    perspective_transform.keras_function = keras_function
    return perspective_transform


def _switch_on() -> Callable:
    keras_function = keras_internals.backend_image_function(BACKEND_FUNCTION)
    keras_internals.replace_backend_image_function(BACKEND_FUNCTION, _batched(keras_function))
    return keras_function


def _switch_off(keras_function: Callable) -> None:
    keras_internals.replace_backend_image_function(BACKEND_FUNCTION, keras_function)


_switch = SharedSwitch(_switch_on, _switch_off)


def batched_perspective_transform() -> contextlib.AbstractContextManager[None]:
    """While the block runs, Keras' ``perspective_transform`` is computed on whole batches
    where it can (see the module doc). Nested and concurrent blocks share one replacement,
    undone when the last block ends."""
    return _switch()
