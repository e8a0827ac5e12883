"""Rules for ``keras.layers.Conv1DTranspose``, ``Conv2DTranspose`` and ``Conv3DTranspose``.

A Keras transposed convolution computes the *full* transposed convolution of its input (no
padding: ``(in - 1) * stride + k_eff`` positions per axis, ``k_eff = (k - 1) * dilation + 1``),
then keeps a window of it: ``crop_left`` positions are dropped on the left and ``crop_right``
on the right, a negative crop meaning zeros added instead (JAX's convention, which Keras follows
on every backend). The full transposed convolution is the adjoint of the *valid* strided
convolution with the same kernel, so the rule undoes the window (zeros where positions were
cropped, a crop where zeros were added) and convolves: ``conv(g_full, kernel, strides,
'valid', dilation)``, whose output has exactly the input's size.
"""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import activation_vjp
from jacverify.backward.rules.convolutional._transpose import spatial_axes
from jacverify.backward.rules.core.dense import check_not_quantized


def keras_transpose_pads(kernel_size, stride, dilation, padding, output_padding):
    """``(left_pad, right_pad)`` of Keras's transposed convolution on one axis, as
    ``keras.src.backend.common.backend_utils._convert_conv_transpose_padding_args_from_keras_to_jax``
    computes them (the output is the input dilated by the stride, padded by these, correlated
    with the flipped kernel)."""
    k_eff = (kernel_size - 1) * dilation + 1
    if padding.lower() == "valid":
        if output_padding is None:
            output_padding = max(k_eff, stride) - k_eff
        return k_eff - 1, k_eff - 1 + output_padding
    if output_padding is None:
        pad_len = stride + k_eff - 2
    else:
        pad_len = k_eff + k_eff % 2 - 2 + output_padding
    left = min(pad_len // 2 + pad_len % 2, k_eff - 1)
    return left, pad_len - left


def output_crops(kernel_size, strides, dilations, padding, output_padding):
    """Per spatial axis, ``(crop_left, crop_right)`` of the full transposed convolution."""
    crops = []
    for i, (k, s, d) in enumerate(zip(kernel_size, strides, dilations, strict=True)):
        op = output_padding if output_padding is None or isinstance(output_padding, int) \
            else output_padding[i]
        left, right = keras_transpose_pads(int(k), int(s), int(d), padding, op)
        k_eff = (int(k) - 1) * int(d) + 1
        crops.append((k_eff - 1 - left, k_eff - 1 - right))
    return crops


@register_backward(
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
class BackwardConvTranspose(BackwardNonLinearLayer):
    """``conv(uncrop(g * f'(z)), kernel, strides, 'valid', dilation)``; linear (no input needed)
    without activation: the input's size follows from the gradient's."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        check_not_quantized(layer)
        self._vjp = activation_vjp(layer.activation)
        self.is_linear = self._vjp is None
        self._crops = output_crops(layer.kernel_size, layer.strides, layer.dilation_rate,
                                   layer.padding, layer.output_padding)

    def _pre_activation(self, input, dtype):
        layer = self.layer
        z = ops.conv_transpose(
            ops.cast(input, dtype), ops.cast(layer.kernel, dtype), strides=list(layer.strides),
            padding=layer.padding, output_padding=layer.output_padding,
            dilation_rate=layer.dilation_rate, data_format=layer.data_format,
        )
        if layer.use_bias:
            rank = len(layer.kernel_size)
            shape = ((1,) * (rank + 1) + (layer.filters,) if layer.data_format == "channels_last"
                     else (1, layer.filters) + (1,) * rank)
            z = z + ops.reshape(ops.cast(layer.bias, dtype), shape)
        return z

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        dtype = gradient.dtype
        if self._vjp is not None:
            gradient = self._vjp(gradient, self._pre_activation(input, dtype))
        rank = len(layer.kernel_size)
        axes = spatial_axes(rank, layer.data_format)
        # Cropped positions get zeros; positions the forward added as zeros are dropped.
        widths = [[0, 0] for _ in gradient.shape]
        for axis, (left, right) in zip(axes, self._crops, strict=True):
            widths[axis] = [max(left, 0), max(right, 0)]
        if any(w != [0, 0] for w in widths):
            gradient = ops.pad(gradient, widths)
        if any(left < 0 or right < 0 for left, right in self._crops):
            index = [slice(None)] * len(gradient.shape)
            for axis, (left, right) in zip(axes, self._crops, strict=True):
                size = int(gradient.shape[axis])
                index[axis] = slice(max(-left, 0), size - max(-right, 0))
            gradient = gradient[tuple(index)]
        return ops.conv(
            gradient, ops.cast(layer.kernel, dtype), strides=list(layer.strides),
            padding="valid", data_format=layer.data_format,
            dilation_rate=list(layer.dilation_rate),
        )
