"""Rule of ``keras.ops.ctc_loss``: the gradient of the logits against torch autograd of the
model in float32, and of torch's own ``ctc_loss`` in float64 (Keras computes the forward of a
float64 model in float32 there); labels and lengths are integer inputs of the model (no
gradient), repeated labels, a blank other than 0, short output lengths; a wrong twin caught."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from keras import ops

from jacverify import clone_to_backward
from jacverify.backward.rules.ops.ctc import BackwardCTCLossOp
from jacverify.keras_internals import ops_nn as knn
from tests.backward.model_reference import model_autograd_vjp

BATCH, STEPS, CLASSES, LABELS = 3, 6, 4, 3
#: Repeated labels (the blank between them is compulsory), a shorter label sequence, one
#: example whose output stops early.
TARGETS = np.array([[1, 2, 2], [3, 1, 0], [2, 0, 0]], "int32")
TARGET_LENGTHS = np.array([3, 2, 1], "int32")
OUTPUT_LENGTHS = np.array([6, 5, 3], "int32")


def _model(dtype, blank):
    target = keras.Input((LABELS,), dtype="int32")
    logits = keras.Input((STEPS, CLASSES), dtype=dtype)
    target_length = keras.Input((), dtype="int32")
    output_length = keras.Input((), dtype="int32")
    loss = ops.ctc_loss(target, logits, target_length, output_length, mask_index=blank)
    return keras.Model([target, logits, target_length, output_length], loss)


def _inputs(dtype, blank, seed=0):
    rng = np.random.default_rng(seed)
    targets = np.where(TARGETS == 0, 0, TARGETS)
    if blank:  # keep the labels off the blank class
        targets = np.where(targets == blank, 0, targets)
    logits = rng.standard_normal((BATCH, STEPS, CLASSES)).astype(dtype)
    return [targets, logits, TARGET_LENGTHS, OUTPUT_LENGTHS]


def _torch_gradient(xs, g, blank):
    """Torch's float64 ctc_loss of log_softmax(logits), differentiated by autograd."""
    logits = torch.tensor(np.asarray(xs[1], "float64"), requires_grad=True)
    log_probs = torch.log_softmax(logits, -1).transpose(0, 1)
    loss = torch.nn.functional.ctc_loss(
        log_probs, torch.tensor(xs[0], dtype=torch.long), torch.tensor(xs[3], dtype=torch.long),
        torch.tensor(xs[2], dtype=torch.long), blank=blank, reduction="none")
    (grad,) = torch.autograd.grad(loss, logits, torch.tensor(g, dtype=torch.float64))
    return grad.numpy()


@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_loss_matches_autograd_float32(blank):
    model = _model("float32", blank)
    xs = _inputs("float32", blank)
    g = np.random.default_rng(1).standard_normal((BATCH,)).astype("float32")
    got = clone_to_backward(model)(xs + [g])
    expected = model_autograd_vjp(model, xs, [g])
    np.testing.assert_allclose(np.asarray(got[1]), expected[1], rtol=1e-5, atol=1e-6)
    for index in (0, 2, 3):  # integers: no gradient
        assert not np.any(np.asarray(got[index]))
    assert not np.any(np.asarray(got[1])[2, 3:])  # after the example's output length


@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_loss_is_float64_precise(blank):
    model = _model("float64", blank)
    xs = _inputs("float64", blank, seed=2)
    g = np.random.default_rng(3).standard_normal((BATCH,))
    got = clone_to_backward(model)(xs + [g])
    np.testing.assert_allclose(np.asarray(got[1]), _torch_gradient(xs, g, blank), rtol=1e-11,
                               atol=1e-12)


class CTCWithoutSoftmaxTerm(BackwardCTCLossOp):
    """Forgets the softmax's normalisation: ``-occ`` instead of ``softmax sum(occ) - occ``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        results = super().call_on_reshaped_gradient(gradient, input)
        logits = ops.cast(input[1], gradient.dtype)
        steps = ops.arange(STEPS)[None, :, None] < ops.cast(input[3], "int32")[:, None, None]
        softmax = ops.softmax(logits, axis=-1) * ops.cast(steps, gradient.dtype)
        results[1] = results[1] - ops.reshape(gradient, (-1, 1, 1)) * softmax
        return results


def test_a_wrong_ctc_rule_is_caught():
    model = _model("float32", 0)
    xs = _inputs("float32", 0)
    g = np.ones((BATCH,), "float32")
    expected = model_autograd_vjp(model, xs, [g])[1]
    wrong = clone_to_backward(model, {knn.CTCLoss: CTCWithoutSoftmaxTerm})(xs + [g])[1]
    assert np.max(np.abs(np.asarray(wrong) - expected)) > 0.1
