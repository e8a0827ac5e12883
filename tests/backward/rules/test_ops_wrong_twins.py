"""The tests of the ``keras.ops`` nn/math/linalg rules can fail: deliberately wrong twins of the
rules are rejected by the autograd reference, and, at kinks, by the checker."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from keras.src.ops import linalg as klinalg
from keras.src.ops import math as kmath
from keras.src.ops import nn as knn

from jacverify import check_layer
from jacverify.backward.rules.ops.attention import BackwardDotProductAttentionOp
from jacverify.backward.rules.ops.convolution import BackwardConvOp
from jacverify.backward.rules.ops.crossentropy import BackwardBinaryCrossentropyOp
from jacverify.backward.rules.ops.distances import BackwardNormOp
from jacverify.backward.rules.ops.matrix import BackwardDetOp
from jacverify.backward.rules.ops.special import BackwardLogsumexpOp
from jacverify.check.layer_configs._common import packed
from tests.backward.model_reference import assert_model_matches_autograd, functional

KERNEL = np.random.default_rng(0).standard_normal((3, 3, 2, 2)).astype("float32")


class _ConvUnflippedKernel(BackwardConvOp):
    """The adjoint computed as a correlation with the same (unflipped) kernel."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        kernel = ops.convert_to_tensor(np.swapaxes(KERNEL, -1, -2))
        return ops.conv(gradient, kernel, padding="same")


class _LogsumexpUnnormalized(BackwardLogsumexpOp):
    """``g * exp(x)``: forgets to divide by the sum."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.expand_dims(gradient, -1) * ops.exp(input)


class _AttentionUnscaled(BackwardDotProductAttentionOp):
    """Forgets the scale in the query and key gradients (doubles them here)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        grads = super().call_on_reshaped_gradient(gradient, input=input)
        return [grads[0] * 2.0, grads[1] * 2.0, grads[2]]


class _BinaryCrossentropyTargetSign(BackwardBinaryCrossentropyOp):
    """The target's gradient with the wrong sign."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        d_target, d_logits = super().call_on_reshaped_gradient(gradient, input=input)
        return [-d_target, d_logits]


class _DetWithoutTranspose(BackwardDetOp):
    """``det(A) A^{-1}`` instead of ``det(A) A^{-T}``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        result = super().call_on_reshaped_gradient(gradient, input=input)
        return ops.swapaxes(result, -1, -2)


@pytest.mark.parametrize("op_class,rule,fn,shapes", [
    (knn.Conv, _ConvUnflippedKernel, lambda x: ops.conv(x, KERNEL, padding="same"),
     [(4, 4, 2)]),
    (kmath.Logsumexp, _LogsumexpUnnormalized, lambda x: ops.logsumexp(x, axis=-1), [(4,)]),
    (knn.DotProductAttention, _AttentionUnscaled,
     lambda q, k, v: ops.dot_product_attention(q, k, v), [(3, 2, 2), (4, 2, 2), (4, 2, 2)]),
    (knn.BinaryCrossentropy, _BinaryCrossentropyTargetSign,
     lambda t, z: ops.binary_crossentropy(t, z, from_logits=True), [(4,), (4,)]),
    (klinalg.Det, _DetWithoutTranspose, lambda x: ops.det(x), [(3, 3)]),
])
def test_reference_rejects_wrong_op_rules(op_class, rule, fn, shapes):
    model = functional(fn, shapes)
    assert_model_matches_autograd(model)  # the native rule passes ...
    with pytest.raises(AssertionError):  # ... and the wrong twin is caught
        assert_model_matches_autograd(model, mapping={op_class: rule}, extra_axes=())


class _InfinityNormNotShared(BackwardNormOp):
    """``sign(x)`` on every tied maximum of ``|x|`` (weights summing to more than 1 at ties:
    outside the subdifferential)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        x = ops.cast(input, gradient.dtype)
        peak = ops.max(ops.abs(x), axis=-1, keepdims=True)
        hits = ops.cast(ops.equal(ops.abs(x), peak), x.dtype)
        return ops.expand_dims(gradient, -1) * ops.sign(x) * hits


def test_checker_passes_the_infinity_norm_and_catches_a_twin_wrong_at_ties():
    layer, shape = packed(klinalg.Norm(ord=float("inf"), axis=-1), (3,))
    right = check_layer(layer, input_shape=shape, seed=0, examples=30)
    assert right.verdict == "pass", right.reason
    wrong = check_layer(layer, _InfinityNormNotShared, input_shape=shape, seed=0, examples=30)
    assert wrong.verdict in ("boundary", "fail"), wrong.reason
