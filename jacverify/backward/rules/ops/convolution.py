"""Rules of the convolutions of ``keras.ops``: ``conv``, ``conv_transpose``,
``depthwise_conv`` and ``separable_conv`` with constant kernels (arrays or variables).

Each is linear in its input: the rule is the adjoint of the convolution, computed as for the
convolution layers (:mod:`jacverify.backward.rules.convolutional`). A kernel that is a tensor
of the model is refused: it would carry the batch axis.
"""

from __future__ import annotations

from keras import ops

from jacverify.backward.registry import register_backward
from jacverify.backward.rules.convolutional import _transpose
from jacverify.backward.rules.convolutional.conv_transpose import output_crops
from jacverify.backward.rules.convolutional.depthwise_conv import depthwise_input_gradient
from jacverify.backward.rules.ops._arguments import constant_operand, data_format_of, per_axis
from jacverify.backward.rules.ops._base import BackwardOperation
from jacverify.keras_internals import ops_nn as knn


class _BackwardConvolutionOp(BackwardOperation):
    """Shared geometry: rank, strides, dilations, data format and the input's spatial sizes."""

    #: Positions of the kernel arguments after the input, with their names.
    kernel_arguments: tuple = ((1, "kernel"),)

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self._format = data_format_of(layer)
        dims = self._input_dims()[0]
        self._rank = len(dims) - 1
        self._strides = per_axis(layer.strides, self._rank)
        self._dilations = per_axis(layer.dilation_rate, self._rank)
        self.is_linear = self._dims_known()

    def _kernels(self, dtype) -> list:
        return [constant_operand(self, p, n, dtype) for p, n in self.kernel_arguments]

    def _in_sizes(self, input) -> list:  # noqa: A002
        dims = self._runtime_dims(input)[0]
        return list(dims[:-1]) if self._format == "channels_last" else list(dims[1:])


@register_backward(knn.Conv)
class BackwardConvOp(_BackwardConvolutionOp):
    """``ops.conv(x, kernel, ...)``: the full transposed convolution of ``g`` with the same
    kernel, cropped to the input (groups as Keras infers them from the kernel)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        (kernel,) = self._kernels(gradient.dtype)
        sizes = self._runtime_dims(input)[0]
        channels = sizes[-1] if self._format == "channels_last" else sizes[0]
        return _transpose.conv_input_gradient(
            gradient, kernel, in_sizes=self._in_sizes(input), padding=self.layer.padding,
            strides=self._strides, dilations=self._dilations, data_format=self._format,
            groups=int(channels) // int(kernel.shape[-2]),
        )


@register_backward(knn.DepthwiseConv)
class BackwardDepthwiseConvOp(_BackwardConvolutionOp):
    """``ops.depthwise_conv(x, kernel, ...)``: a transposed convolution with one group per
    input channel, cropped to the input."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        (kernel,) = self._kernels(gradient.dtype)
        return depthwise_input_gradient(
            gradient, kernel, in_sizes=self._in_sizes(input), padding=self.layer.padding,
            strides=self._strides, dilations=self._dilations, data_format=self._format,
        )


@register_backward(knn.SeparableConv)
class BackwardSeparableConvOp(_BackwardConvolutionOp):
    """``ops.separable_conv(x, depthwise_kernel, pointwise_kernel, ...)``: the pointwise
    kernel's transpose on the channel axis, then the depthwise rule."""

    kernel_arguments = ((1, "depthwise_kernel"), (2, "pointwise_kernel"))

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        depthwise, pointwise = self._kernels(gradient.dtype)
        pointwise = ops.reshape(pointwise, tuple(pointwise.shape)[-2:])  # (C * M, filters)
        if self._format == "channels_last":
            gradient = ops.einsum("...f,cf->...c", gradient, pointwise)
        else:
            gradient = ops.moveaxis(
                ops.einsum("...f,cf->...c", ops.moveaxis(gradient, 1, -1), pointwise), -1, 1
            )
        return depthwise_input_gradient(
            gradient, depthwise, in_sizes=self._in_sizes(input), padding=self.layer.padding,
            strides=self._strides, dilations=self._dilations, data_format=self._format,
        )


@register_backward(knn.ConvTranspose)
class BackwardConvTransposeOp(_BackwardConvolutionOp):
    """``ops.conv_transpose(x, kernel, ...)``: undo the window Keras keeps of the full
    transposed convolution (zeros where it cropped, a crop where it added zeros), then the
    valid strided convolution with the same kernel."""

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        self.is_linear = True

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        (kernel,) = self._kernels(gradient.dtype)
        kernel_size = tuple(int(k) for k in kernel.shape[: self._rank])
        output_padding = self.layer.output_padding
        if output_padding is not None:
            output_padding = per_axis(output_padding, self._rank)
        crops = output_crops(kernel_size, self._strides, self._dilations, self.layer.padding,
                             output_padding)
        axes = _transpose.spatial_axes(self._rank, self._format)
        widths = [[0, 0] for _ in gradient.shape]
        for axis, (left, right) in zip(axes, crops, strict=True):
            widths[axis] = [max(left, 0), max(right, 0)]
        if any(w != [0, 0] for w in widths):
            gradient = ops.pad(gradient, widths)
        if any(left < 0 or right < 0 for left, right in crops):
            index = [slice(None)] * len(gradient.shape)
            for axis, (left, right) in zip(axes, crops, strict=True):
                size = int(gradient.shape[axis])
                index[axis] = slice(max(-left, 0), size - max(-right, 0))
            gradient = gradient[tuple(index)]
        return ops.conv(gradient, kernel, strides=list(self._strides), padding="valid",
                        data_format=self._format, dilation_rate=list(self._dilations))
