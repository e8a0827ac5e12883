"""Rules for ``keras.layers.Conv1D``, ``Conv2D`` and ``Conv3D``."""

from __future__ import annotations

import keras
from keras import ops

from jacverify.backward.base import BackwardNonLinearLayer
from jacverify.backward.registry import register_backward
from jacverify.backward.rules.activations.functions import activation_vjp
from jacverify.backward.rules.convolutional import _transpose
from jacverify.backward.rules.core.dense import check_not_quantized
from jacverify.backward.rules.pre_activation import PreActivationProvider
from jacverify.keras_internals import private_member


class BackwardConvBase(PreActivationProvider, BackwardNonLinearLayer):
    """Shared logic of convolution rules: ``g -> f'(z) * g -> transposed convolution``.

    The rule is linear (no input needed) when the layer has no activation and the input's
    spatial size is known (from the shapes, or because every stride is 1): with strides,
    several input sizes give the same output size, and the input tells which one it was.
    With an activation, the pre-activation ``z`` is the forward call's when the backward model
    lets the rule make that call (see :mod:`jacverify.backward.rules.pre_activation`), else
    recomputed.
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer=layer, **kwargs)
        check_not_quantized(layer)
        self._vjp = activation_vjp(layer.activation)
        self.is_linear = self._vjp is None and self._input_sizes_known_from_gradient()

    # ------------------------------------------------------------------------ geometry
    @property
    def _rank(self) -> int:
        return len(self.layer.kernel_size)

    def _spatial(self, dims):
        return list(dims[:-1]) if self.layer.data_format == "channels_last" else list(dims[1:])

    def _input_sizes(self, input=None, gradient=None):
        """Spatial sizes of the input: from the static shape, else from ``input``, else from
        the gradient's (for an axis of stride 1, whose output size determines the input's).
        ``None`` where they cannot be known without the input."""
        layer = self.layer
        sizes = self._spatial(self.input_dim_wo_batch)
        axes = _transpose.spatial_axes(self._rank, layer.data_format)
        for i, n in enumerate(sizes):
            if n is not None:
                continue
            if input is not None:
                sizes[i] = int(input.shape[axes[i]])
                continue
            out = self._spatial(self.output_dim_wo_batch)[i]
            if out is None and gradient is not None:
                out = int(gradient.shape[axes[i]])
            if out is not None:
                sizes[i] = _transpose.input_size_from_output(
                    layer.padding, out, layer.kernel_size[i], layer.strides[i],
                    layer.dilation_rate[i],
                )
        return sizes

    def _input_sizes_known_from_gradient(self) -> bool:
        unknown = [n is None for n in self._spatial(self.input_dim_wo_batch)]
        return all(s == 1 for s, u in zip(self.layer.strides, unknown, strict=True) if u)

    # --------------------------------------------------------------------- the forward
    def _bias(self, dtype):
        if self.layer.bias is None:
            return None
        rank, filters = self._rank, int(self.layer.bias.shape[0])
        shape = (
            (1,) * (rank + 1) + (filters,)
            if self.layer.data_format == "channels_last"
            else (1, filters) + (1,) * rank
        )
        return ops.reshape(ops.cast(self.layer.bias, dtype), shape)

    def _linear_part(self, input, dtype):
        """The layer's output before the bias and activation."""
        raise NotImplementedError

    def _pre_activation(self, input, dtype):
        z = self._linear_part(ops.cast(input, dtype), dtype)
        bias = self._bias(dtype)
        return z if bias is None else z + bias

    # -------------------------------------------------------------------- the backward
    def _linear_backward(self, gradient, in_sizes):
        raise NotImplementedError

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        if self._vjp is not None:
            gradient = self._vjp(gradient, self.pre_activation(input, gradient.dtype))
        return self._linear_backward(gradient, self._input_sizes(input, gradient))


@register_backward(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
class BackwardConv(BackwardConvBase):
    """Rule of a (possibly grouped) convolution: one transposed convolution with the same
    kernel, cropped to the input's size (``keras.ops.conv_transpose`` without groups; torch's
    grouped ``conv_transpose{1,2,3}d`` with groups)."""

    def _linear_part(self, input, dtype):
        layer = self.layer
        kernel = ops.cast(layer.kernel, dtype)
        if layer.padding == "causal":  # Conv1D.call: pad on the left, then 'valid'
            return ops.conv(
                ops.pad(input, private_member(layer, "compute_causal_padding")()),
                kernel,
                strides=list(layer.strides),
                padding="valid",
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        return layer.convolution_op(input, kernel)

    def _linear_backward(self, gradient, in_sizes):
        layer = self.layer
        return _transpose.conv_input_gradient(
            gradient,
            ops.cast(layer.kernel, gradient.dtype),
            in_sizes=in_sizes,
            padding=layer.padding,
            strides=layer.strides,
            dilations=layer.dilation_rate,
            data_format=layer.data_format,
            groups=layer.groups,
        )
