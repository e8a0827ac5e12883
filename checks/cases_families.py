"""Cases for native rules of every family the other cases do not reach: one plausible bug
each (a dropped activation derivative, a kernel cropped on the wrong side, a forgotten
epsilon, scale or sign, a permutation not inverted, a training-time scale, a missing softmax
correction...), on a configuration where it shows.

``FAMILIES`` names, for every family of native rules, the cases that exercise it (here or in
:mod:`checks.cases_native`), so that the corpus covers every family.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from checks.case import Case, wrong
from jacverify import registered_rules
from jacverify.check.layer_configs._common import finish, packed
from jacverify.keras_internals import CustomScaleLayer, LayerScale
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_numpy as knp

registered_rules()  # load the native rules before importing their modules by name

from jacverify.analysis.losses.crossentropy import (  # noqa: E402
    BackwardCategoricalCrossentropyLoss,
    CategoricalCrossentropyLoss,
)
from jacverify.backward.rules.activations.activation import BackwardActivation  # noqa: E402
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
from jacverify.backward.rules.convolutional.conv import BackwardConv  # noqa: E402
from jacverify.backward.rules.core.dense import BackwardDense  # noqa: E402
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


class SoftmaxWithoutProjection(BackwardSoftmax):
    """``s * g``: forgets ``- <g, s>``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient * ops.softmax(input, axis=-1)


# ------------------------------------------------------------------------------------ core
class DenseActivationDropped(BackwardDense):
    """``g W^T``: forgets the activation's derivative."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.cast(self.layer.kernel, gradient.dtype)
        return ops.einsum("...o,io->...i", gradient, kernel)


# --------------------------------------------------------------------------- convolutional
class Conv2DCropOnTheWrongSide(BackwardConv):
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


# ----------------------------------------------------------------------------------- losses
class CrossentropyWithoutSoftmax(BackwardCategoricalCrossentropyLoss):
    """On logits, ``-t`` instead of ``softmax(y) sum(t) - t``."""

    def position_partials(self, y_pred, y_true):
        d_pred, d_true = super().position_partials(y_pred, y_true)
        return -y_true, d_true


# ------------------------------------------------------------------------ configurations
def _built(make, shape):
    """A factory of the layer ``make()`` built on ``shape`` with random weights that follow
    the run's seed."""
    return lambda: finish(make(), shape, int(np.random.randint(2**31)))[0]


def _packed(make, shape):
    return lambda: packed(make(), shape, int(np.random.randint(2**31)))[0]


def _twin(name, make, shape, rule, category, description, expected="fail", packed=False):
    factory = (_packed if packed else _built)(make, shape)
    return wrong(name, factory, shape, rule, expected, category, description)


CASES: list[Case] = [
    _twin("activation_derivative_dropped", lambda: L.Activation("tanh"), (5,),
          ActivationDerivativeDropped, "chain_rule", "returns g: forgets tanh'"),
    _twin("softmax_without_projection", L.Softmax, (4,), SoftmaxWithoutProjection,
          "chain_rule", "s * g: forgets - <g, s>"),
    _twin("dense_sigmoid_activation_dropped", lambda: L.Dense(3, activation="sigmoid"), (4,),
          DenseActivationDropped, "chain_rule", "g W^T: forgets sigmoid'"),
    _twin("conv2d_same_cropped_on_the_wrong_side", lambda: L.Conv2D(1, 2, padding="same"),
          (3, 2, 1), Conv2DCropOnTheWrongSide, "configuration",
          "'same' padding of an even kernel cropped on the wrong side"),
    _twin("permute_not_inverted", lambda: L.Permute((2, 3, 1)), (2, 2, 2),
          PermuteNotInverted, "transposed", "transposes by the permutation, not its inverse"),
    _twin("subtract_without_sign", L.Subtract, [(4,), (4,)], SubtractWithoutSign, "sign",
          "[g, g]: forgets the minus sign of the subtrahend"),
    _twin("batch_normalization_without_epsilon", lambda: L.BatchNormalization(epsilon=0.5),
          (3,), BatchNormalizationWithoutEpsilon, "configuration",
          "g gamma / sqrt(variance): forgets epsilon (0.5)"),
    _twin("batch_normalization_without_gamma", L.BatchNormalization, (3,),
          BatchNormalizationWithoutScale, "chain_rule", "forgets gamma"),
    _twin("layer_normalization_without_mean_term", L.LayerNormalization, (5,),
          LayerNormalizationWithoutMeanTerm, "chain_rule", "forgets - mean(g)"),
    _twin("dropout_training_scale", lambda: L.Dropout(0.5), (4,), DropoutTrainingScale,
          "configuration", "g / (1 - rate): the training-time scale at inference"),
    _twin("rescaling_first_channel_scale", lambda: L.Rescaling([0.5, -2.0, 3.0]), (2, 3),
          RescalingFirstChannelScale, "configuration",
          "the first channel's scale for every channel"),
    _twin("normalization_without_sqrt",
          lambda: L.Normalization(mean=[0.0, 1.0], variance=[4.0, 0.25]), (3, 2),
          NormalizationWithoutSqrt, "scale", "divides by the variance, not its square root"),
    _twin("attention_without_softmax_correction", L.Attention, [(3, 2), (4, 2)],
          AttentionWithoutSoftmaxCorrection, "chain_rule", "forgets - <g_p, p>"),
    _twin("multi_head_attention_without_scale",
          lambda: L.MultiHeadAttention(num_heads=2, key_dim=2), [(3, 4), (2, 4)],
          MultiHeadAttentionWithoutScale, "scale",
          "forgets 1 / sqrt(key_dim) on the query's path", packed=True),
    _twin("subtract_op_without_sign", knp.Subtract, [(4,), (4,)], SubtractOpWithoutSign,
          "sign", "keras.ops.subtract: g and g", packed=True),
    _twin("mean_op_forgets_count", lambda: knp.Mean(axis=1), (4, 2), MeanOpForgetsCount,
          "scale", "keras.ops.mean as if it were sum", packed=True),
    _twin("layer_scale_without_gamma", lambda: LayerScale(0.5, 3), (2, 3),
          LayerScaleWithoutGamma, "chain_rule", "returns g: forgets gamma"),
    _twin("custom_scale_layer_scales_both", lambda: CustomScaleLayer(0.17), [(4,), (4,)],
          CustomScaleLayerScalesBoth, "chain_rule", "scales the shortcut's gradient too"),
    _twin("cumsum_op_accumulates_forward", lambda: knp.Cumsum(axis=1), (4,), CumsumOpForward,
          "transposed", "keras.ops.cumsum: the gradient accumulated forward", packed=True),
    _twin("sin_op_with_sin", knp.Sin, (3,), SinOpWithSin, "chain_rule",
          "keras.ops.sin: sin for the derivative", packed=True),
    _twin("sort_op_without_unsort", lambda: knp.Sort(axis=1), (4,), SortOpWithoutUnsort,
          "transposed", "keras.ops.sort: the gradient left in sorted order", packed=True),
    _twin("logsumexp_op_unnormalized", lambda: kmath.Logsumexp(axis=-1), (4,),
          LogsumexpOpUnnormalized, "scale", "keras.ops.logsumexp: exp(x), not softmax(x)",
          packed=True),
    _twin("infinity_norm_op_ties_not_shared",
          lambda: klinalg.Norm(ord=float("inf"), axis=-1), (3,), InfinityNormOpNotShared,
          "tie", "keras.ops.norm(ord=inf): every tied maximum gets the full gradient",
          expected="boundary", packed=True),
    _twin("crossentropy_on_logits_without_softmax",
          lambda: CategoricalCrossentropyLoss(from_logits=True), [(3,), (3,)],
          CrossentropyWithoutSoftmax, "chain_rule", "-t instead of softmax(y) sum(t) - t"),
]

#: Every family of native rules, and the cases (here or in checks.cases_native) that
#: exercise one of its rules.
FAMILIES: dict[str, tuple[str, ...]] = {
    "activations": ("activation_derivative_dropped", "softmax_without_projection",
                    "relu6_forgets_max_value"),
    "core": ("dense_sigmoid_activation_dropped", "dense_square_untransposed"),
    "convolutional": ("conv2d_same_cropped_on_the_wrong_side", "conv2d_kernel_flipped"),
    "pooling": ("global_max_pool_ties_all", "max_pool_ties_all"),
    "reshaping": ("permute_not_inverted", "flatten_not_reshaped"),
    "merging": ("subtract_without_sign", "maximum_ties_both"),
    "normalization": ("batch_normalization_without_epsilon",
                      "batch_normalization_without_gamma",
                      "layer_normalization_without_mean_term"),
    "regularization": ("dropout_training_scale",),
    "preprocessing": ("rescaling_first_channel_scale", "normalization_without_sqrt"),
    "attention": ("attention_without_softmax_correction",
                  "multi_head_attention_without_scale"),
    "ops": ("subtract_op_without_sign", "mean_op_forgets_count"),
    "applications": ("layer_scale_without_gamma", "custom_scale_layer_scales_both"),
    "ops_numpy": ("cumsum_op_accumulates_forward", "sin_op_with_sin", "sort_op_without_unsort"),
    "ops_nn": ("logsumexp_op_unnormalized", "infinity_norm_op_ties_not_shared"),
    "recurrent": ("lstm_forget_factor_dropped",),
    "losses": ("crossentropy_on_logits_without_softmax",),
}
