"""Rules of the ``keras.ops.image`` functions: ``resize`` (the interpolation matrices of
:mod:`jacverify.backward.rules.preprocessing._resize`), ``crop_images`` and ``pad_images``
(each one's gradient is the other's window), ``rgb_to_grayscale`` (a fixed weighted sum of
the channels), ``gaussian_blur``, ``extract_patches`` (2-D) and ``sobel_edges``
(convolutions with fixed kernels).

All are linear. The offsets of a crop or a padding are read from Keras' own function run on
an image of position numbers (so every combination of its arguments is placed as Keras
places it), not re-derived.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.convolutional import _transpose
from jacverify.backward.rules.convolutional.depthwise_conv import depthwise_input_gradient
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.backward.rules.preprocessing._resize import (
    gather_rows_into_first,
    repeats_first_row,
    resize_vjp,
)
from jacverify.keras_internals import ops_image as kimage

#: The channel weights of ``rgb_to_grayscale`` on torch (torchvision's).
GRAYSCALE_WEIGHTS = (0.2989, 0.587, 0.114)


class _BackwardImageOp(BackwardOperation):
    """Images ``(batch, height, width, channels)`` or channels first (rank 4)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        dims = self._input_dims()[0]
        if len(dims) != 3:
            raise ValueError(
                f"{type(self).__name__}: '{layer.name}' takes one image per example (rank 3 "
                f"without the batch axis), got shape {tuple(dims)}; batches of images only."
            )
        self._format = layer.data_format
        self.is_linear = self._dims_known()

    def _spatial(self, dims) -> tuple:
        return (dims[0], dims[1]) if self._format == "channels_last" else (dims[1], dims[2])

    def _spatial_axes(self) -> tuple:
        return (1, 2) if self._format == "channels_last" else (2, 3)


@register_backward(kimage.Resize)
class BackwardResizeOp(_BackwardImageOp):
    """``ops.image.resize``: ``R_h^T g R_w`` per channel with the crop or padding to the
    aspect ratio undone (the padding's fill value is a constant). Where the backend's forward
    repeats the first output row (see :func:`repeats_first_row`), the gradient of every row
    goes to the first."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._first_row_only = self._dims_known() and repeats_first_row(
            layer, tuple(self._input_dims()[0]), self._format)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        if self._first_row_only:
            gradient = gather_rows_into_first(
                gradient, -3 if self._format == "channels_last" else -2)
        return resize_vjp(
            gradient, in_size=self._spatial(self._runtime_dims(input)[0]),
            out_size=tuple(op.size), interpolation=op.interpolation, antialias=op.antialias,
            data_format=self._format, crop_to_aspect_ratio=op.crop_to_aspect_ratio,
            pad_to_aspect_ratio=op.pad_to_aspect_ratio,
        )


def window_offsets(operation, in_size: tuple, data_format: str) -> tuple:
    """``(top, left, height, width)`` of the window a crop keeps, or where a padding puts the
    image: read from ``operation`` applied to an image of position numbers 1, 2, ..."""
    height, width = in_size
    numbers = np.arange(1, height * width + 1, dtype="float64").reshape(1, height, width, 1)
    if data_format == "channels_first":
        numbers = numbers.transpose(0, 3, 1, 2)
    placed = np.asarray(ops.convert_to_numpy(operation(numbers)))
    placed = placed[0, :, :, 0] if data_format == "channels_last" else placed[0, 0]
    return placed


@register_backward(kimage.CropImages)
class BackwardCropImagesOp(_BackwardImageOp):
    """``ops.image.crop_images``: ``g`` padded with zeros back to the image's size."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        height, width = self._spatial(self._runtime_dims(input)[0])
        placed = window_offsets(self.layer, (height, width), self._format)
        first = int(placed[0, 0]) - 1
        top, left = divmod(first, width)
        widths = [[0, 0]] * 4
        for axis, start, size, total in zip(self._spatial_axes(), (top, left), placed.shape,
                                            (height, width), strict=True):
            widths[axis] = [start, total - start - size]
        return ops.pad(gradient, widths)


@register_backward(kimage.PadImages)
class BackwardPadImagesOp(_BackwardImageOp):
    """``ops.image.pad_images``: the window of ``g`` where the image was put."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        height, width = self._spatial(self._runtime_dims(input)[0])
        placed = window_offsets(self.layer, (height, width), self._format)
        rows, cols = np.nonzero(placed == 1)
        top, left = int(rows[0]), int(cols[0])
        index = [slice(None)] * 4
        first, second = self._spatial_axes()
        index[first] = slice(top, top + height)
        index[second] = slice(left, left + width)
        return gradient[tuple(index)]


@register_backward(kimage.RGBToGrayscale)
class BackwardRGBToGrayscaleOp(_BackwardImageOp):
    """``ops.image.rgb_to_grayscale``: three channels: ``g`` times each channel's weight; one
    channel: ``g``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)[0]
        channels = dims[-1] if self._format == "channels_last" else dims[0]
        if channels == 1:
            return gradient
        shape = (1, 1, 1, 3) if self._format == "channels_last" else (1, 3, 1, 1)
        weights = ops.reshape(ops.convert_to_tensor(np.asarray(GRAYSCALE_WEIGHTS),
                                                    dtype=gradient.dtype), shape)
        return gradient * weights


def gaussian_kernel(kernel_size, sigma) -> np.ndarray:
    """The 2-D kernel of ``gaussian_blur`` as Keras' torch backend builds it (the outer product
    of the normalized 1-D kernels, laid out as ``(kernel_size[0], kernel_size[1])``)."""

    def one_d(size, s):
        x = np.arange(size, dtype="float64") - (size - 1) / 2
        k = np.exp(-0.5 * (x / s) ** 2)
        return k / k.sum()

    size = [int(k) for k in kernel_size]
    outer = np.outer(one_d(size[1], float(sigma[1])), one_d(size[0], float(sigma[0])))
    return outer.reshape(size[0], size[1])


@register_backward(kimage.GaussianBlur)
class BackwardGaussianBlurOp(_BackwardImageOp):
    """``ops.image.gaussian_blur``: a depthwise correlation with a fixed kernel after
    ``kernel_size[0] // 2`` zeros on each side of both spatial axes; its adjoint is the full
    transposed correlation, cropped to the image."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        kernel_size = tuple(op.kernel_size) if isinstance(op.kernel_size, (list, tuple)) \
            else (op.kernel_size,) * 2
        sigma = tuple(op.sigma) if isinstance(op.sigma, (list, tuple)) else (op.sigma,) * 2
        dims = self._runtime_dims(input)[0]
        height, width = self._spatial(dims)
        channels = dims[-1] if self._format == "channels_last" else dims[0]
        pad = int(kernel_size[0]) // 2
        kernel = np.broadcast_to(gaussian_kernel(kernel_size, sigma)[:, :, None, None],
                                 (*gaussian_kernel(kernel_size, sigma).shape, channels, 1))
        full = depthwise_input_gradient(
            gradient, ops.convert_to_tensor(np.ascontiguousarray(kernel), dtype=gradient.dtype),
            in_sizes=[height + 2 * pad, width + 2 * pad], padding="valid", strides=(1, 1),
            dilations=(1, 1), data_format=self._format,
        )
        index = [slice(None)] * 4
        first, second = self._spatial_axes()
        index[first] = slice(pad, pad + height)
        index[second] = slice(pad, pad + width)
        return full[tuple(index)]


@register_backward(kimage.ExtractPatches)
class BackwardExtractPatchesOp(_BackwardImageOp):
    """``ops.image.extract_patches`` (2-D): Keras computes it as a convolution with an identity
    kernel; the adjoint is that convolution's (each patch's gradient added back in place)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
        size = (op.size, op.size) if isinstance(op.size, int) else tuple(op.size)
        if len(size) != 2:
            raise NotImplementedError(
                f"{type(self).__name__}: 3-D patches ('{op.name}') have no rule yet."
            )
        dims = self._runtime_dims(input)[0]
        channels = dims[-1] if self._format == "channels_last" else dims[0]
        out_dim = size[0] * size[1] * channels
        kernel = np.eye(out_dim).reshape(size[0], size[1], channels, out_dim)
        strides = op.strides or size
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        dilation = op.dilation_rate
        dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        return _transpose.conv_input_gradient(
            gradient, ops.convert_to_tensor(kernel, dtype=gradient.dtype),
            in_sizes=list(self._spatial(dims)), padding=op.padding, strides=strides,
            dilations=dilation, data_format=self._format,
        )


_SOBEL_Y = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])
_SOBEL_X = _SOBEL_Y.T


@register_backward(kimage.SobelEdges)
class BackwardSobelEdgesOp(_BackwardImageOp):
    """``ops.image.sobel_edges``: two depthwise 3x3 correlations (``[..., 0]`` vertical,
    ``[..., 1]`` horizontal, one zero on each side); the sum of their adjoints."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        dims = self._runtime_dims(input)[0]
        channels = dims[-1] if self._format == "channels_last" else dims[0]
        result = None
        for which, sobel in enumerate((_SOBEL_Y, _SOBEL_X)):
            kernel = np.ascontiguousarray(
                np.broadcast_to(sobel[:, :, None, None], (3, 3, channels, 1)))
            part = depthwise_input_gradient(
                gradient[..., which], ops.convert_to_tensor(kernel, dtype=gradient.dtype),
                in_sizes=list(self._spatial(dims)), padding="same", strides=(1, 1),
                dilations=(1, 1), data_format=self._format,
            )
            result = part if result is None else result + part
        return result
