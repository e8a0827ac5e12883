"""Rule for ``keras.layers.Resizing``."""

from __future__ import annotations

import keras

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.preprocessing._resize import (
    gather_rows_into_first,
    repeats_first_row,
    resize_vjp,
)


def spatial_size(dims, data_format):
    """``(height, width)`` from a shape without the batch axis (rank 3)."""
    return (dims[0], dims[1]) if data_format == "channels_last" else (dims[1], dims[2])


@register_backward(keras.layers.Resizing)
class BackwardResizing(BackwardLinearLayer):
    """``R_h^T g R_w`` per channel, with the crop (``crop_to_aspect_ratio``: zeros outside the
    box) or the padding (``pad_to_aspect_ratio``: the padding dropped) undone; see
    :mod:`._resize` for the interpolation matrices (``bilinear``, ``nearest``, ``bicubic``,
    with or without ``antialias``; ``lanczos`` is not available on torch). Where the backend's
    forward repeats the first output row (torch's anti-aliased resize to a width of 1, see
    :func:`._resize.repeats_first_row`), the gradient of every row
    goes to the first. Linear; the same in training and at inference. Batches of images only
    (rank 4)."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = None not in spatial_size(self.input_dim_wo_batch, layer.data_format)
        self._first_row_only = self.is_linear and repeats_first_row(
            layer, tuple(self.input_dim_wo_batch), layer.data_format)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        dims = self.input_dim_wo_batch if input is None else list(input.shape[1:])
        if self._first_row_only:
            gradient = gather_rows_into_first(
                gradient, -3 if layer.data_format == "channels_last" else -2)
        return resize_vjp(
            gradient, in_size=spatial_size(dims, layer.data_format),
            out_size=(layer.height, layer.width), interpolation=layer.interpolation,
            antialias=layer.antialias, data_format=layer.data_format,
            crop_to_aspect_ratio=layer.crop_to_aspect_ratio,
            pad_to_aspect_ratio=layer.pad_to_aspect_ratio,
        )
