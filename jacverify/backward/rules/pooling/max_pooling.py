"""Rules for ``keras.layers.MaxPooling1D``, ``MaxPooling2D`` and ``MaxPooling3D``."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules._spatial import spatial_rank
from jacverify.backward.rules.pooling._common import (
    PoolingGeometry,
    pooling_geometry,
    spatial_sizes,
    to_channels_first,
    to_channels_last,
    unpad,
)
from jacverify.backward.rules.pre_activation import forward_state, identical


@register_backward(keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D)
class BackwardMaxPooling(BackwardNonLinearLayer):
    """Route each window's gradient to the window's maximum (the first one on ties, as torch
    does); overlapping windows add their gradients on shared elements.

    The argmax comes from torch's own pooling (``return_indices=True``) run on exactly the
    tensor Keras pools (channels first, "same" padding implicit or replicated), and the
    gradient is scattered with ``scatter_add``: the same work as torch's backward kernel.
    In a backward model, the rule makes the layer's forward call from that pooling
    (:meth:`provide_forward`) and its own call reuses the indices. Torch backend only.
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
        _require_torch(type(self).__name__)
        import torch

        nd = self.n_spatial
        geometry = self._geometry_of(input)
        if self._format == "channels_last":
            gradient = to_channels_first(gradient, nd)
        argmax = self._kept_argmax(input, gradient.dtype)
        if argmax is None:
            x = self._pooled_tensor(ops.cast(input, gradient.dtype), geometry)
            _, indices = self._pool(x, geometry)
            argmax = (indices, tuple(x.shape))
        indices, shape = argmax
        batch, channels = shape[0], shape[1]
        result = torch.zeros(
            (batch, channels, math.prod(shape[2:])), dtype=gradient.dtype,
            device=gradient.device,
        ).scatter_add(
            2, indices.reshape(batch, channels, -1), gradient.reshape(batch, channels, -1)
        )
        result = result.reshape(shape)
        if geometry.replicate:
            result = unpad(result, list(range(2, 2 + nd)), geometry)
        if self._format == "channels_last":
            result = to_channels_last(result, nd)
        return result

    def provide_forward(self, inputs: list, mask, call_layer: Callable):
        """The layer's output on ``inputs`` (one tensor) from torch's pooling with indices,
        which the next call of this rule on the same tensor (in this thread) reuses instead of
        pooling again. The first call at each input shape and dtype also makes the layer's own
        call and compares the outputs bit for bit; where they differ, the layer's own call is
        used at that shape and nothing is kept."""
        if keras.backend.backend() != "torch" or len(inputs) != 1:
            return call_layer()
        (x_in,) = inputs
        state = forward_state(self)
        key = (tuple(x_in.shape), str(x_in.dtype))
        verdict = state["reproduces"].get(key)
        if verdict is False:
            return call_layer()
        geometry = self._geometry_of(x_in)
        x = self._pooled_tensor(x_in, geometry)
        pooled, indices = self._pool(x, geometry)
        output = pooled
        if self._format == "channels_last":  # a view, as Keras' max_pool returns
            output = pooled.permute(0, *range(2, self.n_spatial + 2), 1)
        if verdict is None:
            expected = call_layer()
            state["reproduces"][key] = identical(expected, output)
            if not state["reproduces"][key]:
                return expected
        state["kept"][threading.get_ident()] = (x_in, indices, tuple(x.shape))
        return output

    # ---------------------------------------------------------------------- the pooling
    def _geometry_of(self, input) -> PoolingGeometry:
        return self._geometry or pooling_geometry(
            self.layer, spatial_sizes(input.shape[1:], self.n_spatial, self._format))

    def _pooled_tensor(self, x, geometry: PoolingGeometry):
        """``x`` as Keras' max pooling hands it to torch: channels first (contiguous), padded
        by replication where "same" padding is not symmetric."""
        import torch.nn.functional as F  # noqa: N812

        if self._format == "channels_last":
            x = to_channels_first(x, self.n_spatial)
        x = x.contiguous()
        if geometry.replicate:
            flat_pads = [p for pads in reversed(geometry.pads) for p in pads]
            x = F.pad(x, flat_pads, mode="replicate")
        return x

    def _pool(self, x, geometry: PoolingGeometry) -> tuple:
        """``(pooled, indices)`` of torch's max pooling of the prepared tensor ``x``."""
        import torch.nn.functional as F  # noqa: N812

        padding = 0 if geometry.replicate else [left for left, _ in geometry.pads]
        pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[self.n_spatial - 1]
        return pool(x, kernel_size=geometry.pool_size, stride=geometry.strides,
                    padding=padding, return_indices=True)

    def _kept_argmax(self, input, dtype) -> tuple | None:
        """``(indices, padded shape)`` kept by :meth:`provide_forward` for this very tensor
        (in ``dtype``: a cast could make ties)."""
        kept = forward_state(self)["kept"].pop(threading.get_ident(), None)
        if kept is None or kept[0] is not input or input.dtype != dtype:
            return None
        return kept[1], kept[2]


def _require_torch(rule_name: str) -> None:
    if keras.backend.backend() != "torch":
        raise NotImplementedError(
            f"{rule_name} needs the torch backend (it uses torch's max pooling indices); the "
            f"current Keras backend is '{keras.backend.backend()}'."
        )
