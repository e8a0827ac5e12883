"""Rules of the ``keras.ops.image`` functions: ``resize`` (the interpolation matrices of
:mod:`jacverify.backward.rules.preprocessing._resize`), ``crop_images`` and ``pad_images``
(each one's gradient is the other's window), ``rgb_to_grayscale`` (a fixed weighted sum of
the channels).

All are linear. The offsets of a crop or a padding are read from Keras' own function run on
an image of position numbers (so every combination of its arguments is placed as Keras
places it), not re-derived.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from keras.src.ops import image as kimage

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.backward.rules.preprocessing._resize import resize_vjp

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
@keras.saving.register_keras_serializable(package="jacverify")
class BackwardResizeOp(_BackwardImageOp):
    """``ops.image.resize``: ``R_h^T g R_w`` per channel with the crop or padding to the
    aspect ratio undone (the padding's fill value is a constant)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        op = self.layer
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
@keras.saving.register_keras_serializable(package="jacverify")
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
@keras.saving.register_keras_serializable(package="jacverify")
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
@keras.saving.register_keras_serializable(package="jacverify")
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
