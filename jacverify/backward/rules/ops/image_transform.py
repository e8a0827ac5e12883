"""Rules of the geometric image transforms ``keras.ops.image.affine_transform``,
``perspective_transform`` and ``scale_and_translate``. In the first two each output pixel
samples the input image at transformed coordinates (see
:mod:`jacverify.backward.rules.ops.sampling`): the gradient goes back to the pixels each
sample read. ``scale_and_translate`` applies a fixed resampling matrix along each spatial
axis: the gradient goes back through their transposes.

Coordinates are computed as Keras 3.15's torch backend computes them: ``affine_transform``
reads output pixel ``(i, j, c)`` at row ``b0 j + b1 i + b2 + c0 c`` and column
``a0 j + a1 i + a2 + c1 c`` of channel ``c`` (the projective entries ``c0, c1`` multiply the
channel index there); ``perspective_transform`` at the homography of its points. That
backend also writes into the ``transform`` tensor it is given (it swaps entries 0 and 4, and
2 and 5, in place), so a transform tensor of the model is read differently by each call; the
rule refuses a transform that is a tensor of the model and takes a constant one.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules._call_arguments import is_input
from jacverify.backward.rules.ops._base import BackwardOperation, dtype_of
from jacverify.backward.rules.ops.fourier import contract
from jacverify.backward.rules.ops.image import _BackwardImageOp
from jacverify.backward.rules.ops.sampling import sampling_vjp
from jacverify.keras_internals import ops_image as kimage

#: The interpolation order of each ``interpolation`` name.
ORDERS = {"nearest": 0, "bilinear": 1}


class _BackwardSampledImage(_BackwardImageOp):
    """Images sampled per channel at coordinates that do not depend on the images."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if layer.interpolation not in ORDERS:
            raise ValueError(
                f"{type(layer).__name__} '{layer.name}': interpolation="
                f"{layer.interpolation!r} has no rule (only {sorted(ORDERS)})."
            )
        self.is_linear = False

    def _channels_last(self, x):
        return x if self._format == "channels_last" else ops.moveaxis(x, 1, -1)

    def _back(self, x):
        return x if self._format == "channels_last" else ops.moveaxis(x, -1, 1)


def _grids(height: int, width: int, channels: int):
    """Row, column and channel index of every pixel, shaped ``(1, height, width, channels)``
    (float64 numpy)."""
    rows, cols, chans = np.meshgrid(np.arange(height), np.arange(width), np.arange(channels),
                                    indexing="ij")
    return [a[None].astype("float64") for a in (rows, cols, chans)]


@register_backward(kimage.AffineTransform)
class BackwardAffineTransformOp(_BackwardSampledImage):
    """``affine_transform(images, transform)`` with a constant ``transform`` (one row of 8
    numbers per example): the adjoint of the sampling at the transformed coordinates."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if len(self.call_args) < 2 or is_input(self.call_args[1]):
            raise ValueError(
                f"AffineTransform '{layer.name}': its transform is a tensor of the model. "
                "Keras 3.15's torch affine_transform swaps entries of that tensor in place "
                "at every call, so no rule can know the transform the forward call used. "
                "Pass the transform as a constant array of shape (batch, 8)."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        images = self._channels_last(ops.cast(self._inputs(input)[0], gradient.dtype))
        g = self._channels_last(gradient)
        batch, height, width, channels = (int(d) for d in images.shape)
        transform = np.asarray(self.call_args[1], dtype="float64").reshape(-1, 8)
        if batch % transform.shape[0]:
            raise ValueError(
                f"AffineTransform '{self.layer.name}': {transform.shape[0]} transforms "
                f"for a batch of {batch} images."
            )
        # One row per example; rows of a Jacobian (extra axes) repeat each example in place.
        transform = np.repeat(transform, batch // transform.shape[0], axis=0)
        a0, a1, a2, b0, b1, b2, c0, c1 = (transform[:, k].reshape(-1, 1, 1, 1)
                                          for k in range(8))
        rows, cols, chans = _grids(height, width, channels)
        coordinates = [b0 * cols + b1 * rows + b2 + c0 * chans,
                       a0 * cols + a1 * rows + a2 + c1 * chans,
                       np.broadcast_to(chans, (batch, height, width, channels))]
        coordinates = [ops.convert_to_tensor(np.ascontiguousarray(c), dtype=g.dtype)
                       for c in coordinates]
        op = self.layer
        g_images, _ = sampling_vjp(
            images, coordinates, g, order=ORDERS[op.interpolation], fill_mode=op.fill_mode,
            fill_value=float(op.fill_value), with_coordinates=False)
        return self._pack([self._back(g_images)])


def homography_matrix(start_points, end_points, dtype: str) -> np.ndarray:
    """The 8 entries ``(a0, ..., a7)`` of the homography mapping output points
    ``end_points`` to input points ``start_points`` (each ``(4, 2)`` or ``(n, 4, 2)``, as
    ``(x, y)``): the same 8 equations as Keras, built and solved in ``dtype``, the images'
    dtype, as the forward call does in a backward model (under
    :func:`jacverify.float64_precision`; outside it Keras 3.15 solves float64 systems in
    float32): ``(n, 8)`` float64."""
    start = np.asarray(start_points).astype(dtype).reshape(-1, 4, 2)
    end = np.asarray(end_points).astype(dtype).reshape(-1, 4, 2)
    rows, targets = [], []
    for k in range(4):
        sx, sy, ex, ey = start[:, k, 0], start[:, k, 1], end[:, k, 0], end[:, k, 1]
        one, zero = np.ones_like(ex), np.zeros_like(ex)
        rows.append(np.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], -1))
        rows.append(np.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], -1))
        targets += [sx, sy]
    solution = ops.solve(ops.convert_to_tensor(np.stack(rows, 1), dtype=dtype),
                         ops.convert_to_tensor(np.stack(targets, -1)[..., None], dtype=dtype))
    return np.asarray(ops.convert_to_numpy(solution), dtype="float64").reshape(-1, 8)


@register_backward(kimage.PerspectiveTransform)
class BackwardPerspectiveTransformOp(_BackwardSampledImage):
    """``perspective_transform(images, start_points, end_points)`` with constant points: the
    adjoint of the sampling at the homography of the points (the points' gradient is not
    covered: they must be constants)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if any(is_input(v) for v in self.call_args[1:]):
            raise ValueError(
                f"PerspectiveTransform '{layer.name}': its start or end points are tensors "
                "of the model; the rule covers constant points only (the gradient with "
                "respect to the points has no rule)."
            )

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        images = self._channels_last(ops.cast(self._inputs(input)[0], gradient.dtype))
        g = self._channels_last(gradient)
        batch, height, width, channels = (int(d) for d in images.shape)
        homography = homography_matrix(*self.call_args[1:3], dtype_of(images))
        if batch % homography.shape[0]:
            raise ValueError(
                f"PerspectiveTransform '{self.layer.name}': {homography.shape[0]} sets of "
                f"points for a batch of {batch} images."
            )
        homography = np.repeat(homography, batch // homography.shape[0], axis=0)
        a = [homography[:, k].reshape(-1, 1, 1) for k in range(8)]
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype="float64"),
                                     np.arange(height, dtype="float64"), indexing="xy")
        denominator = a[6] * grid_x + a[7] * grid_y + 1.0
        x_in = (a[0] * grid_x + a[1] * grid_y + a[2]) / denominator
        y_in = (a[3] * grid_x + a[4] * grid_y + a[5]) / denominator
        # One sampled plane per (example, channel): channels join the batch axis.
        planes = ops.reshape(ops.moveaxis(images, -1, 1), (batch * channels, height, width))
        g_planes = ops.reshape(ops.moveaxis(g, -1, 1), (batch * channels, height, width))
        coordinates = [ops.convert_to_tensor(np.repeat(c, channels, axis=0), dtype=g.dtype)
                       for c in (y_in, x_in)]
        g_images, _ = sampling_vjp(
            planes, coordinates, g_planes, order=ORDERS[self.layer.interpolation],
            fill_mode="constant", fill_value=float(self.layer.fill_value),
            with_coordinates=False)
        g_images = ops.moveaxis(ops.reshape(g_images, (batch, channels, height, width)), 1, -1)
        return self._pack([self._back(g_images)])


def resampling_matrix(operation, size: int, index: int, output_size: int, scale, translation,
                      dtype: str) -> np.ndarray:
    """The ``(size, output_size)`` matrix ``scale_and_translate`` applies along its
    ``index``-th spatial axis: read from Keras' own function run on the identity (row ``i``
    is where input position ``i`` goes), with the same constants as the forward call."""
    scale = np.asarray(scale)
    translation = np.asarray(translation)
    matrix = kimage.scale_and_translate(
        np.eye(size, dtype=dtype), (size, output_size), scale[index: index + 1],
        translation[index: index + 1], spatial_dims=(1,), method=operation.method,
        antialias=operation.antialias)
    return np.asarray(ops.convert_to_numpy(matrix), dtype="float64")


@register_backward(kimage.ScaleAndTranslate)
class BackwardScaleAndTranslateOp(BackwardOperation):
    """``scale_and_translate(images, output_shape, scale, translation, spatial_dims, method,
    antialias)`` with constant scales and translations: a fixed resampling matrix ``W_d`` per
    spatial axis, applied one axis after the other; the adjoint applies each ``W_d^T``."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        if any(is_input(v) for v in self.call_args[1:]):
            raise ValueError(
                f"ScaleAndTranslate '{layer.name}': its scale or translation is a tensor of "
                "the model; the rule covers constants only (the gradient with respect to "
                "them has no rule)."
            )
        rank = len(self._input_dims()[0]) + 1
        axes = [int(d) % rank for d in layer.spatial_dims]
        if 0 in axes:
            raise ValueError(
                f"ScaleAndTranslate '{layer.name}': it resamples the first axis, the batch "
                "axis: its Jacobian couples the examples of a batch, which a backward rule "
                "cannot express."
            )
        self._axes = axes
        self.is_linear = self._dims_known()
        self._matrices = self._resampling(self._input_dims()[0]) if self._dims_known() \
            else None

    def _resampling(self, dims) -> list:
        output_shape, scale, translation = self.call_args[1:4]
        return [resampling_matrix(self.layer, int(dims[axis - 1]), index,
                                  int(output_shape[axis]), scale, translation, "float64")
                for index, axis in enumerate(self._axes)]

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        matrices = self._matrices or self._resampling(self._runtime_dims(input)[0])
        for axis, matrix in reversed(list(zip(self._axes, matrices, strict=True))):
            gradient = contract(gradient, matrix, axis)
        return gradient
