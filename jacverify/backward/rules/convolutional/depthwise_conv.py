"""Rules for ``keras.layers.DepthwiseConv1D`` and ``DepthwiseConv2D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.convolutional import _transpose
from jacverify.backward.rules.convolutional.conv import BackwardConvBase


def depthwise_input_gradient(gradient, depthwise_kernel, *, in_sizes, padding, strides,
                             dilations, data_format):
    """``g^T J`` of ``ops.depthwise_conv``: a transposed convolution with one group per input
    channel (torch backend), its kernel the depthwise kernel ``(*k, C, M)`` seen as the
    ``(*k, 1, C * M)`` kernel of the grouped convolution Keras runs."""
    shape = tuple(depthwise_kernel.shape)
    channels, multiplier = int(shape[-2]), int(shape[-1])
    kernel = ops.reshape(depthwise_kernel, shape[:-2] + (1, channels * multiplier))
    return _transpose.conv_input_gradient(
        gradient,
        kernel,
        in_sizes=in_sizes,
        padding=padding,
        strides=strides,
        dilations=dilations,
        data_format=data_format,
        groups=channels,
    )


@register_backward(keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
class BackwardDepthwiseConv(BackwardConvBase):
    """Rule of a depthwise convolution: one grouped transposed convolution (``groups`` = input
    channels), cropped to the input's size."""

    def _linear_part(self, input, dtype):
        layer = self.layer
        return ops.depthwise_conv(
            input,
            ops.cast(layer.kernel, dtype),
            strides=layer.strides,
            padding=layer.padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def _linear_backward(self, gradient, in_sizes):
        layer = self.layer
        return depthwise_input_gradient(
            gradient,
            ops.cast(layer.kernel, gradient.dtype),
            in_sizes=in_sizes,
            padding=layer.padding,
            strides=layer.strides,
            dilations=layer.dilation_rate,
            data_format=layer.data_format,
        )
