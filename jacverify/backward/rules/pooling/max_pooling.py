"""Rules for ``keras.layers.MaxPooling1D``, ``MaxPooling2D`` and ``MaxPooling3D``."""

from __future__ import annotations

import math

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.pooling._common import (
    pooling_geometry,
    spatial_sizes,
    to_channels_first,
    to_channels_last,
    unpad,
)


@register_backward(keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D)
class BackwardMaxPooling(BackwardNonLinearLayer):
    """Route each window's gradient to the window's maximum (the first one on ties, as torch
    does); overlapping windows add their gradients on shared elements.

    The argmax comes from torch's own pooling (``return_indices=True``) run on exactly the
    tensor Keras pools (channels first, "same" padding implicit or replicated), and the
    gradient is scattered with ``scatter_add``: the same work as torch's backward kernel.
    Torch backend only.
    """

    @property
    def n_spatial(self) -> int:
        """The number of spatial axes (1, 2 or 3), from the shape the layer is built for."""
        return spatial_rank(self.input_dim_wo_batch)

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._format = layer.data_format
        sizes = spatial_sizes(self.input_dim_wo_batch, self.n_spatial, self._format)
        self._geometry = None if sizes is None else pooling_geometry(layer, sizes)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if keras.backend.backend() != "torch":
            raise NotImplementedError(
                f"{type(self).__name__} needs the torch backend (it uses torch's max pooling "
                f"indices); the current Keras backend is '{keras.backend.backend()}'."
            )
        import torch
        import torch.nn.functional as F

        nd = self.n_spatial
        geometry = self._geometry or pooling_geometry(
            self.layer, spatial_sizes(input.shape[1:], nd, self._format)
        )
        x = ops.cast(input, gradient.dtype)
        if self._format == "channels_last":
            x = to_channels_first(x, nd)
            gradient = to_channels_first(gradient, nd)
        x = x.contiguous()
        if geometry.replicate:
            flat_pads = [p for pads in reversed(geometry.pads) for p in pads]
            x = F.pad(x, flat_pads, mode="replicate")
            padding = 0
        else:
            padding = [left for left, _ in geometry.pads]
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
        _, indices = pool(
            x, kernel_size=geometry.pool_size, stride=geometry.strides, padding=padding,
            return_indices=True,
        )
        batch, channels = x.shape[0], x.shape[1]
        result = torch.zeros(
            (batch, channels, math.prod(x.shape[2:])), dtype=gradient.dtype,
            device=gradient.device,
        ).scatter_add(
            2, indices.reshape(batch, channels, -1), gradient.reshape(batch, channels, -1)
        )
        result = result.reshape(x.shape)
        if geometry.replicate:
            result = unpad(result, list(range(2, 2 + nd)), geometry)
        if self._format == "channels_last":
            result = to_channels_last(result, nd)
        return result
