"""Rules for ``keras.layers.SeparableConv1D`` and ``SeparableConv2D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.convolutional.conv import BackwardConvBase
from jacverify.backward.rules.convolutional.depthwise_conv import depthwise_input_gradient

_LETTERS = "xyz"


@register_backward(keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
class BackwardSeparableConv(BackwardConvBase):
    """Rule of a separable convolution (depthwise, then a 1x1 pointwise convolution):
    the pointwise kernel's transpose on the channel axis, then the depthwise rule."""

    def _linear_part(self, input, dtype):
        layer = self.layer
        return ops.separable_conv(
            input,
            ops.cast(layer.depthwise_kernel, dtype),
            ops.cast(layer.pointwise_kernel, dtype),
            strides=layer.strides,
            padding=layer.padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def _pointwise_backward(self, gradient):
        pointwise = ops.cast(self.layer.pointwise_kernel, gradient.dtype)
        shape = tuple(pointwise.shape)
        pointwise = ops.reshape(pointwise, shape[-2:])  # (C * M, filters)
        # einsum, not matmul: keras.ops.matmul computes float64 in float32 on torch.
        if self.layer.data_format == "channels_last":
            return ops.einsum("...f,cf->...c", gradient, pointwise)
        space = _LETTERS[: self._rank]
        return ops.einsum(f"bf{space},cf->bc{space}", gradient, pointwise)

    def _linear_backward(self, gradient, in_sizes):
        layer = self.layer
        return depthwise_input_gradient(
            self._pointwise_backward(gradient),
            ops.cast(layer.depthwise_kernel, gradient.dtype),
            in_sizes=in_sizes,
            padding=layer.padding,
            strides=layer.strides,
            dilations=layer.dilation_rate,
            data_format=layer.data_format,
        )
