"""Cases for native Keras layers: the registered rules (which must pass), and subclasses of
them with one bug each."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from checks.case import Case, correct, wrong
from checks.folding import extra_axes
from jacverify.backward.rules.activations.activation import BackwardActivation
from jacverify.backward.rules.activations.elu import BackwardELU
from jacverify.backward.rules.activations.leaky_relu import BackwardLeakyReLU
from jacverify.backward.rules.activations.relu import BackwardReLU
from jacverify.backward.rules.activations.softmax import BackwardSoftmax
from jacverify.backward.rules.convolutional.conv import BackwardConv
from jacverify.backward.rules.core.dense import BackwardDense
from jacverify.backward.rules.merging.maximum import BackwardMaximum
from jacverify.backward.rules.merging.multiply import BackwardMultiply
from jacverify.backward.rules.pooling.average_pooling import BackwardAveragePooling
from jacverify.backward.rules.pooling.global_average_pooling import (
    BackwardGlobalAveragePooling,
)
from jacverify.backward.rules.pooling.global_max_pooling import BackwardGlobalMaxPooling
from jacverify.backward.rules.pooling.max_pooling import BackwardMaxPooling
from jacverify.backward.rules.reshaping.flatten import BackwardFlatten
from jacverify.backward.rules.reshaping.zero_padding import BackwardZeroPadding

L = keras.layers


def _f(mask, like):
    return ops.cast(mask, like.dtype)


def _kernel(layer, like):
    return ops.cast(layer.kernel, like.dtype)


def conv_adjoint(gradient, kernel, data_format: str = "channels_last"):
    """``g^T J`` of a stride-1, 'valid', undilated convolution with ``kernel``."""
    return ops.conv_transpose(gradient, kernel, strides=1, padding="valid",
                              data_format=data_format)


# ---------------------------------------------------------------------------------- Dense
class DenseNegated(BackwardDense):
    """``-g W^T``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return -super().call_on_reshaped_gradient(gradient, input)


class DenseActivationDropped(BackwardDense):
    """``g W^T``: the activation's derivative is dropped."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.einsum("...o,io->...i", gradient, _kernel(self.layer, gradient))


class DenseUntransposed(BackwardDense):
    """``g W`` instead of ``g W^T`` (no activation)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.einsum("...o,oi->...i", gradient, _kernel(self.layer, gradient))


class DenseFirstExample(BackwardDense):
    """The activation's derivative at the batch's first example, for every example."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input[:1])


class DenseFoldOrder(BackwardDense):
    """Folds one extra Jacobian axis itself: the gradient row-major over ``(k, batch)``, the
    input repeated over ``(batch, k)``: rows meet the wrong example."""

    def call(self, inputs, training=None, mask=None):
        gradient, x = inputs
        extra = extra_axes(gradient, self.output_dim_wo_batch)
        if not extra:
            return self.call_on_reshaped_gradient(gradient, input=x)
        k = extra[0]
        folded = ops.reshape(ops.transpose(gradient, (1, 0, 2)), (-1, gradient.shape[-1]))
        result = self.call_on_reshaped_gradient(folded, input=ops.repeat(x, k, axis=0))
        return ops.transpose(ops.reshape(result, (k, -1, result.shape[-1])), (1, 0, 2))


# ------------------------------------------------------------------- activation layers
class ReLU6ForgetsMaxValue(BackwardReLU):
    """1 for every ``x > 0``: ``max_value`` is forgotten."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * _f(ops.greater(input, 0), gradient)


class ReLUWrongAtZero(BackwardReLU):
    """1.5 exactly at 0 (the subgradients there are ``[0, 1]``)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        slope = _f(ops.greater(input, 0), gradient) + 1.5 * _f(ops.equal(input, 0), gradient)
        return gradient * slope


class ReLUThinBand(BackwardReLU):
    """0 instead of 1 on ``(0, 1e-4]``: the kink is misplaced."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * _f(ops.greater(input, 1e-4), gradient)


class LeakyReLUZeroBelow(BackwardLeakyReLU):
    """0 below zero instead of ``negative_slope``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * _f(ops.greater(input, 0), gradient)


class TanhAtOutput(BackwardActivation):
    """``tanh'(tanh(x))`` instead of ``tanh'(x)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, ops.tanh(input))


class ELUAtOutput(BackwardELU):
    """``elu'(elu(x))`` instead of ``elu'(x)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, ops.elu(input, self.layer.alpha))


class ELUInfTimesZero(BackwardELU):
    """``1[x > 0] + alpha exp(x) 1[x <= 0]``: ``inf * 0 = NaN`` once ``exp(x)`` overflows."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        alpha = ops.convert_to_tensor(self.layer.alpha, dtype=gradient.dtype)
        above = _f(ops.greater(x, 0), gradient)
        return gradient * (above + alpha * ops.exp(x) * (1 - above))


class SoftmaxUnstable(BackwardSoftmax):
    """``s = exp(x) / sum(exp(x))`` without subtracting the maximum: NaN for large ``x``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        e = ops.exp(ops.cast(input, gradient.dtype))
        s = e / ops.sum(e, axis=-1, keepdims=True)
        return s * (gradient - ops.sum(gradient * s, axis=-1, keepdims=True))


# -------------------------------------------------------------------------- convolutions
class ConvActivationDropped(BackwardConv):
    """The transposed convolution of ``g``: the activation's derivative is dropped."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return conv_adjoint(gradient, _kernel(self.layer, gradient), self.layer.data_format)


class ConvChannelsTransposed(BackwardConv):
    """The kernel's channel axes swapped (``W^T`` on a square 1x1 convolution)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.transpose(_kernel(self.layer, gradient), (0, 1, 3, 2))
        return conv_adjoint(gradient, kernel, self.layer.data_format)


class Conv1DKernelFlipped(BackwardConv):
    """The kernel flipped along its spatial axis before the transposed convolution."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.flip(_kernel(self.layer, gradient), axis=0)
        return conv_adjoint(gradient, kernel, self.layer.data_format)


class Conv2DKernelFlipped(BackwardConv):
    """The kernel flipped along both spatial axes before the transposed convolution."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.flip(ops.flip(_kernel(self.layer, gradient), axis=0), axis=1)
        return conv_adjoint(gradient, kernel, self.layer.data_format)


class Conv2DShiftedByOne(BackwardConv):
    """The result shifted up by one row (the last row zero)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        full = conv_adjoint(gradient, _kernel(self.layer, gradient))
        return ops.pad(full[:, 1:], ((0, 0), (0, 1), (0, 0), (0, 0)))


class Conv1DSamePaddingSwapped(BackwardConv):
    """'same' padding with an even kernel: crops the full transposed convolution from the
    right padding's length instead of the left's (one position off)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        n = int(self.input_dim_wo_batch[0])
        k = int(self.layer.kernel_size[0])
        right = (k - 1) - (k - 1) // 2
        full = conv_adjoint(gradient, _kernel(self.layer, gradient))
        return full[:, right : right + n]


class Conv2DScaled(BackwardConv):
    """The right value times ``1 + 1e-3``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input) * (1.0 + 1e-3)


class ConvBiasChannelsLast(BackwardConv):
    """Recomputes the pre-activation with the bias shaped ``(1, 1, 1, filters)``: right for
    channels_last; for channels_first it is added along the last spatial axis."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        kernel = _kernel(layer, gradient)
        z = ops.conv(ops.cast(input, gradient.dtype), kernel, strides=1, padding="valid",
                     data_format=layer.data_format)
        z = z + ops.reshape(ops.cast(layer.bias, gradient.dtype), (1, 1, 1, -1))
        gradient = gradient * _f(ops.greater(z, 0), gradient)
        return conv_adjoint(gradient, kernel, layer.data_format)


class Conv1DIgnoresDilation(BackwardConv):
    """The transposed convolution without the layer's ``dilation_rate``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return conv_adjoint(gradient, _kernel(self.layer, gradient))


# ------------------------------------------------------------------------------ pooling
class MaxPoolTiesAll(BackwardMaxPooling):
    """``g`` to every element equal to its window's maximum (2x2 windows, stride 2)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        peak = ops.max_pool(x, 2, strides=2, padding="valid")
        peak = ops.repeat(ops.repeat(peak, 2, axis=1), 2, axis=2)
        spread = ops.repeat(ops.repeat(gradient, 2, axis=1), 2, axis=2)
        return spread * _f(ops.equal(x, peak), gradient)


class MaxPoolOverwrites(BackwardMaxPooling):
    """Routes each window's gradient to its maximum with ``scatter`` instead of
    ``scatter_add``: right for disjoint windows, wrong where windows overlap (stride < pool)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        import torch
        import torch.nn.functional as F

        layer = self.layer
        x = ops.transpose(ops.cast(input, gradient.dtype), (0, 3, 1, 2)).contiguous()
        g = ops.transpose(gradient, (0, 3, 1, 2))
        _, indices = F.max_pool2d(x, layer.pool_size, layer.strides, return_indices=True)
        b, c = x.shape[0], x.shape[1]
        result = torch.zeros((b, c, x.shape[2] * x.shape[3]), dtype=g.dtype).scatter(
            2, indices.reshape(b, c, -1), g.reshape(b, c, -1)
        )
        return ops.transpose(ops.reshape(result, x.shape), (0, 2, 3, 1))


class AvgPoolFixedDivisor(BackwardAveragePooling):
    """Divides by the full window size everywhere; with 'same' padding Keras divides edge
    windows by the number of real elements (3x3 windows, stride 1)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        channels = int(gradient.shape[-1])
        ones = np.full((3, 3, channels, 1), 1.0 / 9.0)
        kernel = ops.convert_to_tensor(ones, dtype=gradient.dtype)
        return ops.depthwise_conv(gradient, kernel, strides=1, padding="same")


class GlobalMaxPoolTiesAll(BackwardGlobalMaxPooling):
    """``g`` to every step equal to the maximum."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        hits = _f(ops.equal(x, ops.max(x, axis=1, keepdims=True)), gradient)
        return ops.expand_dims(gradient, 1) * hits


class GlobalAvgPoolNotBroadcast(BackwardGlobalAveragePooling):
    """``g / steps`` without spreading it back over the steps."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / float(self.input_dim_wo_batch[0])


# ------------------------------------------------------------------- reshaping, merging
class FlattenNotReshaped(BackwardFlatten):
    """Returns the flat gradient without reshaping it to the input's shape."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


class ZeroPaddingNotCropped(BackwardZeroPadding):
    """Returns the gradient of the padded tensor without cropping the padding off."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


class MaximumTiesBoth(BackwardMaximum):
    """``g`` to every input equal to the maximum (not split between tied inputs)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        xs = [ops.cast(x, gradient.dtype) for x in input]
        peak = xs[0]
        for x in xs[1:]:
            peak = ops.where(ops.greater(x, peak), x, peak)
        return [gradient * _f(ops.equal(x, peak), gradient) for x in xs]


# --------------------------------------------------------------------------- factories
def _dense3():
    return L.Dense(3)


def _dense4():
    return L.Dense(4)


def _dense_relu():
    return L.Dense(4, activation="relu", bias_initializer="random_normal")


def _conv2d():
    return L.Conv2D(3, 3)


def _conv2d_tanh():
    return L.Conv2D(3, 3, activation="tanh", bias_initializer="random_normal")


def _conv1x1():
    return L.Conv2D(3, 1)


def _conv1d():
    return L.Conv1D(2, 3)


def _conv1d_same_even():
    return L.Conv1D(2, 4, padding="same")


def _conv1d_dilated():
    return L.Conv1D(2, 3, dilation_rate=2)


def _conv_channels_first():
    return L.Conv2D(4, 3, activation="relu", data_format="channels_first",
                    bias_initializer=keras.initializers.RandomNormal(stddev=1.0))


def _conv_channels_last():
    return L.Conv2D(4, 3, activation="relu",
                    bias_initializer=keras.initializers.RandomNormal(stddev=1.0))


CONV_FIRST = (3, 6, 6)  # output (4, 4, 4): the misshaped bias still broadcasts
CONV_LAST = (6, 6, 3)

CASES: list[Case] = [
    # ---------------------------------------------------------------- correct rules
    correct("dense_correct", _dense3, (5,), BackwardDense, "registered rule, 5 -> 3"),
    correct("dense_square_correct", _dense4, (4,), BackwardDense, "registered rule, 4 -> 4"),
    correct("dense_relu_correct", _dense_relu, (4,), BackwardDense,
            "registered rule, 4 -> 4 with relu"),
    correct("relu_correct", L.ReLU, (6,), BackwardReLU, "registered rule"),
    correct("relu6_correct", lambda: L.ReLU(max_value=6.0), (6,), BackwardReLU,
            "registered rule, max_value 6"),
    correct("leaky_relu_correct", L.LeakyReLU, (6,), BackwardLeakyReLU, "registered rule"),
    correct("elu_correct", L.ELU, (6,), BackwardELU, "registered rule"),
    correct("tanh_correct", lambda: L.Activation("tanh"), (6,), BackwardActivation,
            "registered rule"),
    correct("softmax_correct", L.Softmax, (5,), BackwardSoftmax, "registered rule"),
    correct("conv2d_correct", _conv2d, (6, 6, 2), BackwardConv, "registered rule, 3x3"),
    correct("conv2d_tanh_correct", _conv2d_tanh, (5, 5, 2), BackwardConv,
            "registered rule, 3x3 with tanh"),
    correct("conv1x1_correct", _conv1x1, (4, 4, 3), BackwardConv,
            "registered rule, 1x1, 3 -> 3 channels"),
    correct("conv1d_correct", _conv1d, (7, 3), BackwardConv, "registered rule, width 3"),
    correct("conv1d_same_even_correct", _conv1d_same_even, (8, 3), BackwardConv,
            "registered rule, width 4, 'same'"),
    correct("conv1d_dilated_correct", _conv1d_dilated, (9, 3), BackwardConv,
            "registered rule, dilation 2"),
    correct("conv2d_channels_first_correct", _conv_channels_first, CONV_FIRST, BackwardConv,
            "registered rule, channels_first, relu, random bias"),
    correct("max_pool_correct", lambda: L.MaxPooling2D(2), (4, 4, 2), BackwardMaxPooling,
            "registered rule, 2x2 stride 2"),
    correct("max_pool_stride1_correct", lambda: L.MaxPooling2D(2, strides=1), (4, 4, 2),
            BackwardMaxPooling, "registered rule, 2x2 stride 1 (overlapping windows)"),
    correct("avg_pool_same_correct", lambda: L.AveragePooling2D(3, strides=1, padding="same"),
            (5, 5, 2), BackwardAveragePooling, "registered rule, 3x3 stride 1 'same'"),
    correct("global_max_pool_correct", L.GlobalMaxPooling1D, (5, 3),
            BackwardGlobalMaxPooling, "registered rule"),
    correct("global_avg_pool_correct", L.GlobalAveragePooling1D, (5, 3),
            BackwardGlobalAveragePooling, "registered rule"),
    correct("flatten_correct", L.Flatten, (3, 4), BackwardFlatten, "registered rule"),
    correct("zero_padding_correct", lambda: L.ZeroPadding2D(1), (3, 3, 2),
            BackwardZeroPadding, "registered rule"),
    correct("maximum_correct", L.Maximum, [(4,), (4,)], BackwardMaximum,
            "registered rule, two inputs"),
    correct("multiply_correct", L.Multiply, [(4,), (4,)], BackwardMultiply,
            "registered rule, two inputs"),
    # ------------------------------------------------------------------ wrong rules
    wrong("dense_negated", _dense3, (5,), DenseNegated, "fail", "sign", "returns -g W^T"),
    wrong("relu6_forgets_max_value", lambda: L.ReLU(max_value=6.0), (6,), ReLU6ForgetsMaxValue,
          "fail", "mask_outside", "slope 1 above max_value"),
    wrong("leaky_relu_zero_below", L.LeakyReLU, (6,), LeakyReLUZeroBelow, "fail",
          "mask_outside", "slope 0 below zero instead of negative_slope"),
    wrong("relu_wrong_at_zero", L.ReLU, (6,), ReLUWrongAtZero, "boundary", "mask_at_kink",
          "gives 1.5 exactly at 0 (the subgradients there are [0, 1])"),
    wrong("relu_thin_band", L.ReLU, (6,), ReLUThinBand, "boundary", "mask_at_kink",
          "gives 0 on (0, 1e-4]", also=("fail",)),
    wrong("max_pool_ties_all", lambda: L.MaxPooling2D(2), (4, 4, 2), MaxPoolTiesAll,
          "boundary", "tie", "gives g to every tied maximum of a window"),
    wrong("global_max_pool_ties_all", L.GlobalMaxPooling1D, (5, 3), GlobalMaxPoolTiesAll,
          "boundary", "tie", "gives g to every tied maximum"),
    wrong("maximum_ties_both", L.Maximum, [(4,), (4,)], MaximumTiesBoth, "boundary", "tie",
          "gives g to both inputs where they tie"),
    wrong("dense_relu_activation_dropped", _dense_relu, (4,), DenseActivationDropped, "fail",
          "chain_rule", "drops relu' (returns g W^T)"),
    wrong("conv2d_tanh_activation_dropped", _conv2d_tanh, (5, 5, 2), ConvActivationDropped,
          "fail", "chain_rule", "drops tanh' (the transposed convolution of g only)"),
    wrong("tanh_at_output", lambda: L.Activation("tanh"), (6,), TanhAtOutput, "fail",
          "output_not_input", "evaluates tanh' at tanh(x)"),
    wrong("elu_at_output", L.ELU, (6,), ELUAtOutput, "fail", "output_not_input",
          "evaluates elu' at elu(x)"),
    wrong("dense_square_untransposed", _dense4, (4,), DenseUntransposed, "fail", "transposed",
          "g W instead of g W^T on a 4x4 kernel"),
    wrong("conv1x1_channels_transposed", _conv1x1, (4, 4, 3), ConvChannelsTransposed, "fail",
          "transposed", "swaps the channel axes of a square 1x1 kernel"),
    wrong("conv1d_kernel_flipped", _conv1d, (7, 3), Conv1DKernelFlipped, "fail",
          "conv_kernel", "flips the kernel along its spatial axis"),
    wrong("conv2d_kernel_flipped", _conv2d, (6, 6, 2), Conv2DKernelFlipped, "fail",
          "conv_kernel", "flips the kernel along both spatial axes"),
    wrong("conv2d_shifted_by_one", _conv2d, (6, 6, 2), Conv2DShiftedByOne, "fail",
          "conv_kernel", "shifts the result up by one row"),
    wrong("conv1d_same_padding_swapped", _conv1d_same_even, (8, 3), Conv1DSamePaddingSwapped,
          "fail", "conv_kernel",
          "crops with the right padding's length for an even 'same' kernel (one off)"),
    wrong("conv2d_channels_first_bias", _conv_channels_first, CONV_FIRST, ConvBiasChannelsLast,
          "fail", "configuration",
          "adds the bias along the last axis: right for channels_last only",
          also=("boundary",)),
    wrong("max_pool_stride1_overwrites", lambda: L.MaxPooling2D(2, strides=1), (4, 4, 2),
          MaxPoolOverwrites, "fail", "configuration",
          "scatter instead of scatter_add: right only when windows do not overlap"),
    wrong("avg_pool_same_fixed_divisor",
          lambda: L.AveragePooling2D(3, strides=1, padding="same"), (5, 5, 2),
          AvgPoolFixedDivisor, "fail", "configuration",
          "divides by 9 at the edges of 'same' padding (Keras counts real elements only)"),
    wrong("conv1d_ignores_dilation", _conv1d_dilated, (9, 3), Conv1DIgnoresDilation, "error",
          "configuration", "ignores dilation_rate: the transposed convolution is too short"),
    wrong("dense_relu_first_example", _dense_relu, (4,), DenseFirstExample, "fail", "batch",
          "uses the batch's first example's relu mask for every example"),
    wrong("dense_relu_fold_order", _dense_relu, (4,), DenseFoldOrder, "fail", "extra_axes",
          "folds an extra Jacobian axis itself in (k, batch) order but repeats the input in "
          "(batch, k) order"),
    wrong("conv2d_scaled", _conv2d, (6, 6, 2), Conv2DScaled, "fail", "scale",
          "returns the right value times (1 + 1e-3)"),
    wrong("elu_inf_times_zero", L.ELU, (6,), ELUInfTimesZero, "fail", "nan_inf",
          "masks alpha exp(x) by multiplication: inf * 0 = NaN for large x"),
    wrong("softmax_unstable", L.Softmax, (5,), SoftmaxUnstable, "fail", "nan_inf",
          "exp(x) / sum(exp(x)) without subtracting the maximum: NaN for large x"),
    wrong("flatten_not_reshaped", L.Flatten, (3, 4), FlattenNotReshaped, "error", "shape",
          "returns the flat gradient (batch, 12) for a (batch, 3, 4) input"),
    wrong("global_avg_pool_not_broadcast", L.GlobalAveragePooling1D, (5, 3),
          GlobalAvgPoolNotBroadcast, "error", "shape",
          "returns g / steps with shape (batch, channels)"),
    wrong("zero_padding_not_cropped", lambda: L.ZeroPadding2D(1), (3, 3, 2),
          ZeroPaddingNotCropped, "error", "shape", "returns the padded gradient uncropped"),
    # ------------------------------------ the configuration-only bugs, where they are right
    correct("conv2d_channels_last_bias_control", _conv_channels_last, CONV_LAST,
            ConvBiasChannelsLast, "the (1, 1, 1, filters) bias rule on channels_last"),
    correct("max_pool_disjoint_overwrites_control", lambda: L.MaxPooling2D(2), (4, 4, 2),
            MaxPoolOverwrites, "the scatter rule on disjoint windows (stride 2)"),
    correct("conv1d_undilated_control", _conv1d, (7, 3), Conv1DIgnoresDilation,
            "the undilated rule on an undilated layer"),
    wrong("dense_3x5_untransposed", _dense3, (5,), DenseUntransposed, "error", "raises",
          "g W instead of g W^T on a 5x3 kernel: the product raises"),
]

