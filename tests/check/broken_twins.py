"""Deliberately wrong twins of native rules, one family at a time, with a configuration where
each bug shows.

Every twin subclasses the real rule and changes one thing a rule author could plausibly get
wrong: a dropped activation derivative, a kernel not transposed or not flipped, a wrong tie
split, a forgotten epsilon, scale or sign, a permutation not inverted, a training-time scale,
a missing softmax correction... A checker that passes any of them on its configuration is
blind to that bug. The first twin of each family is the quickest to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import ops
from keras.src.applications.convnext import LayerScale
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.ops import linalg as klinalg
from keras.src.ops import math as kmath
from keras.src.ops import numpy as knp

from jacverify import registered_rules
from jacverify.check.layer_configs import finish
from jacverify.check.layer_configs._common import packed

registered_rules()  # load the native rules before importing their modules by name

from checks.cases_recurrent import LSTMForgetFactorDropped  # noqa: E402
from jacverify.analysis.losses.crossentropy import (  # noqa: E402
    BackwardCategoricalCrossentropyLoss,
    CategoricalCrossentropyLoss,
)
from jacverify.backward.rules.activations.activation import BackwardActivation  # noqa: E402
from jacverify.backward.rules.activations.relu import BackwardReLU  # noqa: E402
from jacverify.backward.rules.activations.softmax import BackwardSoftmax  # noqa: E402
from jacverify.backward.rules.applications.custom_scale_layer import (  # noqa: E402
    BackwardCustomScaleLayer,
)
from jacverify.backward.rules.applications.layer_scale import BackwardLayerScale  # noqa: E402
from jacverify.backward.rules.attention.attention import BackwardAttention  # noqa: E402
from jacverify.backward.rules.attention.multi_head_attention import (  # noqa: E402
    BackwardMultiHeadAttention,
)
from jacverify.backward.rules.convolutional import _transpose  # noqa: E402
from jacverify.backward.rules.convolutional.conv import BackwardConv2D  # noqa: E402
from jacverify.backward.rules.core.dense import BackwardDense  # noqa: E402
from jacverify.backward.rules.merging.maximum import BackwardMaximum  # noqa: E402
from jacverify.backward.rules.merging.subtract import BackwardSubtract  # noqa: E402
from jacverify.backward.rules.normalization._common import mean  # noqa: E402
from jacverify.backward.rules.normalization.batch_normalization import (  # noqa: E402
    BackwardBatchNormalization,
)
from jacverify.backward.rules.normalization.layer_normalization import (  # noqa: E402
    BackwardLayerNormalization,
)
from jacverify.backward.rules.ops.arithmetic import BackwardSubtractOp  # noqa: E402
from jacverify.backward.rules.ops.cumulative import BackwardCumsumOp  # noqa: E402
from jacverify.backward.rules.ops.distances import BackwardNormOp  # noqa: E402
from jacverify.backward.rules.ops.reduction import BackwardMeanOp  # noqa: E402
from jacverify.backward.rules.ops.sorting import BackwardSortOp  # noqa: E402
from jacverify.backward.rules.ops.special import BackwardLogsumexpOp  # noqa: E402
from jacverify.backward.rules.ops.trigonometric import BackwardSinOp  # noqa: E402
from jacverify.backward.rules.pooling.global_max_pooling import (  # noqa: E402
    BackwardGlobalMaxPooling1D,
)
from jacverify.backward.rules.preprocessing.normalization import (  # noqa: E402
    BackwardNormalization,
)
from jacverify.backward.rules.preprocessing.rescaling import BackwardRescaling  # noqa: E402
from jacverify.backward.rules.regularization.dropout import BackwardDropout  # noqa: E402
from jacverify.backward.rules.reshaping.permute import BackwardPermute  # noqa: E402

L = keras.layers


# ----------------------------------------------------------------------------- activations
class ActivationDerivativeDropped(BackwardActivation):
    """Returns ``g``: forgets the activation's derivative."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


class ReLUIgnoringMaxValue(BackwardReLU):
    """Keeps the gradient above ``max_value``, where the output is constant."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.cast(ops.greater(input, 0), gradient.dtype)


class SoftmaxWithoutProjection(BackwardSoftmax):
    """``s * g``: forgets ``- <g, s>``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.softmax(input, axis=-1)


# ------------------------------------------------------------------------------------ core
class DenseKernelNotTransposed(BackwardDense):
    """``g W`` instead of ``g W^T`` (the shapes agree for a square kernel)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.matmul(gradient, ops.cast(self.layer.kernel, gradient.dtype))


class DenseActivationDropped(BackwardDense):
    """``g W^T``: forgets the activation's derivative."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.cast(self.layer.kernel, gradient.dtype)
        return ops.einsum("...o,io->...i", gradient, kernel)


# --------------------------------------------------------------------------- convolutional
class Conv2DKernelNotFlipped(BackwardConv2D):
    """A 'same' correlation with the kernel's channels swapped: the convolution itself, not
    its adjoint (the spatial flip is missing)."""

    def _linear_backward(self, gradient, in_sizes):
        kernel = ops.transpose(ops.cast(self.layer.kernel, gradient.dtype), (0, 1, 3, 2))
        return ops.conv(gradient, kernel, padding="same")


class Conv2DCropOnTheWrongSide(BackwardConv2D):
    """Assumes 'same' pads more on the left (the opposite of Keras) for even kernels."""

    def _linear_backward(self, gradient, in_sizes):
        layer = self.layer
        full = _transpose.conv_input_gradient(
            gradient, ops.cast(layer.kernel, gradient.dtype),
            in_sizes=[n + k - 1 for n, k in zip(in_sizes, layer.kernel_size, strict=True)],
            padding="valid", strides=layer.strides, dilations=layer.dilation_rate,
            data_format=layer.data_format,
        )
        starts = [k // 2 for k in layer.kernel_size]
        return _transpose.crop(full, starts, in_sizes, 2, layer.data_format)


# --------------------------------------------------------------------------------- pooling
class GlobalMaxPoolingEveryTieGetsAll(BackwardGlobalMaxPooling1D):
    """Gives the whole gradient to every position tied for the maximum (double counts)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        is_max = ops.cast(ops.equal(x, ops.max(x, axis=1, keepdims=True)), gradient.dtype)
        return ops.expand_dims(gradient, 1) * is_max


# ------------------------------------------------------------------------------- reshaping
class PermuteNotInverted(BackwardPermute):
    """Transposes by the forward permutation instead of its inverse."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.transpose(gradient, (0, *[int(d) for d in self.layer.dims]))


# --------------------------------------------------------------------------------- merging
class SubtractWithoutSign(BackwardSubtract):
    """``[g, g]``: forgets the minus sign of the subtrahend."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return self._pack(self._reduce_all([gradient, gradient], input))


class MaximumTiesToEveryInput(BackwardMaximum):
    """Gives the whole gradient to every input tied for the maximum (weights sum to 2)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        xs = [ops.cast(x, gradient.dtype) for x in self._merge_inputs(input)]
        top = xs[0]
        for x in xs[1:]:
            top = ops.maximum(top, x)
        hits = [gradient * ops.cast(ops.equal(x, top), gradient.dtype) for x in xs]
        return self._pack(self._reduce_all(hits, input))


# --------------------------------------------------------------------------- normalization
class BatchNormalizationWithoutEpsilon(BackwardBatchNormalization):
    """``g * gamma / sqrt(moving_variance)``: forgets epsilon."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        rank = len(gradient.shape)
        factor = ops.rsqrt(ops.cast(layer.moving_variance, gradient.dtype))
        if layer.scale:
            factor = factor * ops.cast(layer.gamma, gradient.dtype)
        shape = [1] * rank
        shape[layer.axis % rank] = -1
        return gradient * ops.reshape(factor, shape)


class BatchNormalizationWithoutScale(BackwardBatchNormalization):
    """``g / sqrt(moving_variance + epsilon)``: forgets gamma."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        layer = self.layer
        rank = len(gradient.shape)
        factor = ops.rsqrt(ops.cast(layer.moving_variance, gradient.dtype) + layer.epsilon)
        shape = [1] * rank
        shape[layer.axis % rank] = -1
        return gradient * ops.reshape(factor, shape)


class LayerNormalizationWithoutMeanTerm(BackwardLayerNormalization):
    """``r * (g - x_hat * mean(g * x_hat))`` over the last axis, gamma applied: forgets
    ``- mean(g)``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        if self.layer.gamma is not None:
            gradient = gradient * ops.cast(self.layer.gamma, gradient.dtype)
        axes = [len(gradient.shape) - 1]
        centered = x - mean(x, axes)
        r = ops.rsqrt(mean(ops.square(centered), axes) + self.layer.epsilon)
        x_hat = centered * r
        return r * (gradient - x_hat * mean(gradient * x_hat, axes))


# -------------------------------------------------------------------------- regularization
class DropoutTrainingScale(BackwardDropout):
    """``g / (1 - rate)``: the training-time scale, at inference."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / (1.0 - self.layer.rate)


# --------------------------------------------------------------------------- preprocessing
class RescalingFirstChannelScale(BackwardRescaling):
    """Uses the first channel's scale for every channel."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * float(self._scale.reshape(-1)[0])


class NormalizationWithoutSqrt(BackwardNormalization):
    """Divides by the variance instead of the standard deviation."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient / ops.cast(self.layer.variance, gradient.dtype)


# ------------------------------------------------------------------------------- attention
class AttentionWithoutSoftmaxCorrection(BackwardAttention):
    """Scores' gradient ``p * g_p``: forgets ``- <g_p, p>`` (dot scores, no scale)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        q, v = (ops.cast(t, gradient.dtype) for t in input)
        probs = ops.softmax(ops.einsum("bqd,btd->bqt", q, v), axis=-1)
        g_v = ops.einsum("bqt,bqd->btd", probs, gradient)
        g_scores = probs * ops.einsum("bqd,btd->bqt", gradient, v)
        g_q = ops.einsum("bqt,btd->bqd", g_scores, v)
        g_k = ops.einsum("bqt,bqd->btd", g_scores, q)
        return [g_q, g_v + g_k]


class MultiHeadAttentionWithoutScale(BackwardMultiHeadAttention):
    """Forgets the ``1 / sqrt(key_dim)`` factor on the query gradient's path."""

    def _scale(self):
        return 1.0


# ------------------------------------------------------------------------------------- ops
class SubtractOpWithoutSign(BackwardSubtractOp):
    """``x1 - x2``: ``g`` and ``g``."""

    def _partials(self, a, b, gradient):
        return gradient, gradient


class MeanOpForgetsCount(BackwardMeanOp):
    """``mean`` as if it were ``sum``."""

    def _scale(self, dims):
        return 1.0


class CumsumOpForward(BackwardCumsumOp):
    """``cumsum``'s gradient accumulated forward instead of backward."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.cumsum(gradient, axis=self._axis)


class SinOpWithSin(BackwardSinOp):
    """``sin``'s derivative taken as ``sin``."""

    def derivative(self, x):
        return ops.sin(x)


class SortOpWithoutUnsort(BackwardSortOp):
    """``sort``'s gradient left in sorted order."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


class LogsumexpOpUnnormalized(BackwardLogsumexpOp):
    """``g * exp(x)``: forgets to divide by the sum (a softmax without its normalization)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.expand_dims(gradient, -1) * ops.exp(input)


class InfinityNormOpNotShared(BackwardNormOp):
    """``sign(x)`` on every tied maximum of ``|x|``: not shared, outside the subdifferential."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        peak = ops.max(ops.abs(input), axis=-1, keepdims=True)
        hits = ops.cast(ops.equal(ops.abs(input), peak), gradient.dtype)
        return ops.expand_dims(gradient, -1) * ops.sign(input) * hits


# ---------------------------------------------------------------------------- applications
class LayerScaleWithoutGamma(BackwardLayerScale):
    """Returns ``g``: forgets ``gamma``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


class CustomScaleLayerScalesBoth(BackwardCustomScaleLayer):
    """Scales the shortcut's gradient too."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        scale = ops.cast(self.layer.scale, gradient.dtype)
        return [gradient * scale, gradient * scale]


# ------------------------------------------------------------------------ configurations
class CrossentropyWithoutSoftmax(BackwardCategoricalCrossentropyLoss):
    """On logits, ``-t`` instead of ``softmax(y) sum(t) - t``."""

    def position_partials(self, y_pred, y_true):
        d_pred, d_true = super().position_partials(y_pred, y_true)
        return -y_true, d_true


@dataclass(frozen=True)
class Twin:
    """A wrong rule, the family of its real rule, and a configuration where its bug shows."""

    name: str
    family: str
    rule: type
    make: Callable[[], tuple]  # () -> (built layer, input shape)


def _built(layer, shape, seed: int = 7):
    return lambda: finish(layer(), shape, seed)


def _mha():
    return packed(L.MultiHeadAttention(num_heads=2, key_dim=2), [(3, 4), (2, 4)], 7)


TWINS = [
    Twin("activation derivative dropped", "activations", ActivationDerivativeDropped,
         _built(lambda: L.Activation("tanh"), (5,))),
    Twin("relu ignoring max_value", "activations", ReLUIgnoringMaxValue,
         _built(lambda: L.ReLU(max_value=1.0), (6,))),
    Twin("softmax without projection", "activations", SoftmaxWithoutProjection,
         _built(lambda: L.Softmax(), (4,))),
    Twin("dense kernel not transposed", "core", DenseKernelNotTransposed,
         _built(lambda: L.Dense(4), (4,))),
    Twin("dense activation dropped", "core", DenseActivationDropped,
         _built(lambda: L.Dense(3, activation="sigmoid"), (4,))),
    Twin("conv2d same padding cropped on the wrong side", "convolutional",
         Conv2DCropOnTheWrongSide, _built(lambda: L.Conv2D(1, 2, padding="same"), (3, 2, 1))),
    Twin("conv2d kernel not flipped", "convolutional", Conv2DKernelNotFlipped,
         _built(lambda: L.Conv2D(2, 3, padding="same"), (3, 3, 2))),
    Twin("global max pooling double counts ties", "pooling", GlobalMaxPoolingEveryTieGetsAll,
         _built(lambda: L.GlobalMaxPooling1D(), (5, 2))),
    Twin("permute not inverted", "reshaping", PermuteNotInverted,
         _built(lambda: L.Permute((2, 3, 1)), (2, 2, 2))),
    Twin("subtract without sign", "merging", SubtractWithoutSign,
         _built(lambda: L.Subtract(), [(4,), (4,)])),
    Twin("maximum ties to every input", "merging", MaximumTiesToEveryInput,
         _built(lambda: L.Maximum(), [(4,), (4,)])),
    Twin("batch normalization without epsilon", "normalization",
         BatchNormalizationWithoutEpsilon,
         _built(lambda: L.BatchNormalization(epsilon=0.5), (3,))),
    Twin("batch normalization without gamma", "normalization", BatchNormalizationWithoutScale,
         _built(lambda: L.BatchNormalization(), (3,))),
    Twin("layer normalization without mean term", "normalization",
         LayerNormalizationWithoutMeanTerm, _built(lambda: L.LayerNormalization(), (5,))),
    Twin("dropout training-time scale", "regularization", DropoutTrainingScale,
         _built(lambda: L.Dropout(0.5), (4,))),
    Twin("rescaling first channel scale", "preprocessing", RescalingFirstChannelScale,
         _built(lambda: L.Rescaling([0.5, -2.0, 3.0]), (2, 3))),
    Twin("normalization without sqrt", "preprocessing", NormalizationWithoutSqrt,
         _built(lambda: L.Normalization(mean=[0.0, 1.0], variance=[4.0, 0.25]), (3, 2))),
    Twin("attention without softmax correction", "attention",
         AttentionWithoutSoftmaxCorrection, _built(lambda: L.Attention(), [(3, 2), (4, 2)])),
    Twin("multi-head attention without scale", "attention", MultiHeadAttentionWithoutScale,
         _mha),
    Twin("subtract op without sign", "ops", SubtractOpWithoutSign,
         lambda: packed(knp.Subtract(), [(4,), (4,)])),
    Twin("mean op forgets count", "ops", MeanOpForgetsCount,
         lambda: packed(knp.Mean(axis=1), (4, 2))),
    Twin("cumsum op accumulates forward", "ops_numpy", CumsumOpForward,
         lambda: packed(knp.Cumsum(axis=1), (4,))),
    Twin("sin op with sin", "ops_numpy", SinOpWithSin, lambda: packed(knp.Sin(), (3,))),
    Twin("sort op without unsort", "ops_numpy", SortOpWithoutUnsort,
         lambda: packed(knp.Sort(axis=1), (4,))),


    Twin("logsumexp op unnormalized", "ops_nn", LogsumexpOpUnnormalized,
         lambda: packed(kmath.Logsumexp(axis=-1), (4,))),
    Twin("infinity norm op not shared at ties", "ops_nn", InfinityNormOpNotShared,
         lambda: packed(klinalg.Norm(ord=float("inf"), axis=-1), (3,))),
    Twin("layer scale without gamma", "applications", LayerScaleWithoutGamma,
         _built(lambda: LayerScale(0.5, 3), (2, 3))),
    Twin("custom scale layer scales both", "applications", CustomScaleLayerScalesBoth,
         _built(lambda: CustomScaleLayer(0.17), [(4,), (4,)])),
    Twin("lstm forget gate factor dropped", "recurrent", LSTMForgetFactorDropped,
         _built(lambda: L.LSTM(2), (3, 2))),
    Twin("crossentropy on logits without softmax", "losses", CrossentropyWithoutSoftmax,
         _built(lambda: CategoricalCrossentropyLoss(from_logits=True), [(3,), (3,)])),
]
