"""Rule for ``keras.layers.CenterCrop``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.preprocessing._resize import resize_vjp
from jacverify.backward.rules.preprocessing.resizing import spatial_size


@register_backward(keras.layers.CenterCrop)
class BackwardCenterCrop(BackwardLinearLayer):
    """A centred crop when the image is at least the target size in both axes (``g`` padded
    back with zeros); otherwise Keras's ``smart_resize`` (crop to the target aspect ratio, then
    bilinear resize), whose vector-Jacobian product is the resize's. Batches of images only."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = None not in spatial_size(self.input_dim_wo_batch, layer.data_format)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        dims = self.input_dim_wo_batch if input is None else list(input.shape[1:])
        height, width = (int(n) for n in spatial_size(dims, layer.data_format))
        h_diff, w_diff = height - layer.height, width - layer.width
        if h_diff < 0 or w_diff < 0:
            return resize_vjp(
                gradient, in_size=(height, width), out_size=(layer.height, layer.width),
                interpolation="bilinear", antialias=False, data_format=layer.data_format,
                crop_to_aspect_ratio=True,
            )
        h_axis, w_axis = (1, 2) if layer.data_format == "channels_last" else (2, 3)
        widths = [[0, 0] for _ in range(4)]
        widths[h_axis] = [h_diff // 2, h_diff - h_diff // 2]
        widths[w_axis] = [w_diff // 2, w_diff - w_diff // 2]
        return ops.pad(gradient, widths)
