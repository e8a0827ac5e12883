"""Companion inputs (``jacverify.check.companions``): integer inputs with a batch axis, fixed
per configuration, repeated along every batch the call is evaluated on and handed to the rule
where the builder would give them. Checked on ``keras.ops.ctc_loss``: the adapter's forward
equals torch's own float64 ``ctc_loss`` at every batch size, the registered rule passes at
three seeds, and a twin that drops the blank class's gradient is caught; the same for
``sparse_categorical_crossentropy``'s integer target and a user's layer with an integer
input."""

import keras
import numpy as np
import pytest
import torch
from keras import ops

from jacverify import BackwardNonLinearLayer, check_layer, check_registry
from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.rules.ops.crossentropy import BackwardSparseCategoricalCrossentropyOp
from jacverify.backward.rules.ops.ctc import BackwardCTCLossOp
from jacverify.check.adapters import PackedCall
from jacverify.check.companions import CompanionInputs
from jacverify.check.layer_configs._common import packed
from jacverify.keras_internals import ops_nn as knn

STEPS, CLASSES = 5, 3
BLANK = 0
#: A repeated label (a blank must separate the two 2s) and an output shorter than the steps.
TARGET = np.array([2, 2, 1], "int32")
TARGET_LENGTH, OUTPUT_LENGTH = 2, 4
EXAMPLES = 20


def _companions() -> CompanionInputs:
    return CompanionInputs({0: TARGET, 2: np.array(TARGET_LENGTH, "int32"),
                            3: np.array(OUTPUT_LENGTH, "int32")})


def _ctc_call():
    return packed(knn.CTCLoss(mask_index=BLANK), (STEPS, CLASSES), companions=_companions())


def _torch_ctc(logits: np.ndarray) -> np.ndarray:
    """Torch's float64 ctc_loss of every example with the fixed labels and lengths."""
    batch = len(logits)
    log_probs = torch.log_softmax(torch.tensor(logits, dtype=torch.float64), -1)
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), torch.tensor(np.tile(TARGET, (batch, 1)), dtype=torch.long),
        torch.full((batch,), OUTPUT_LENGTH, dtype=torch.long),
        torch.full((batch,), TARGET_LENGTH, dtype=torch.long), blank=BLANK,
        reduction="none").numpy()


# ------------------------------------------------------------------------ the inputs
def test_companions_fill_the_positions_the_drawn_inputs_leave_free():
    companions = _companions()
    assert companions.positions == (0, 2, 3)
    assert companions.all_shapes([(STEPS, CLASSES)]) == [(3,), (STEPS, CLASSES), (), ()]
    merged = companions.merge_batch([np.zeros((4, STEPS, CLASSES))], 4)
    assert [tuple(m.shape) for m in merged] == [(4, 3), (4, STEPS, CLASSES), (4,), (4,)]
    np.testing.assert_array_equal(ops.convert_to_numpy(merged[0]), np.tile(TARGET, (4, 1)))
    assert companions.drawn_only(["t", "logits", "tl", "ol"]) == ["logits"]


def test_a_floating_companion_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="companion input 1 is a float32 array.*ordinary"):
        CompanionInputs({1: np.zeros(3, "float32")})


def test_a_companion_beyond_the_calls_inputs_is_refused():
    with pytest.raises(ValueError, match="positions \\[5\\] for a call of 2 inputs"):
        CompanionInputs({5: np.zeros(3, "int32")}).merge([np.zeros(2)])


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_the_call_repeats_the_companions_along_any_batch(batch):
    """The adapter's forward against torch's own ctc_loss, row by row."""
    adapter, shape = _ctc_call()
    assert shape == (STEPS, CLASSES)
    logits = np.random.default_rng(batch).standard_normal((batch, STEPS, CLASSES))
    got = ops.convert_to_numpy(adapter(logits.astype("float32")))
    np.testing.assert_allclose(got, _torch_ctc(logits), rtol=1e-5)
    assert "companions" in adapter.get_config()


# ------------------------------------------------------------------------- the rule
class CTCBlankGradientDropped(BackwardCTCLossOp):
    """Wrong: the blank class's gradient is dropped (zero on the blank logit of every step)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        results = super().call_on_reshaped_gradient(gradient, input)
        blank = int(self.layer.mask_index)
        keep = np.ones(results[1].shape[-1], "float32")
        keep[blank] = 0.0
        results[1] = results[1] * ops.convert_to_tensor(keep, dtype=results[1].dtype)
        return results


class CTCGradientForEveryInput(BackwardCTCLossOp):
    """Returns the logits' gradient only (forgets the labels' and lengths' entries)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return super().call_on_reshaped_gradient(gradient, input)[1]


def test_the_registered_rule_passes_with_companion_inputs():
    adapter, shape = _ctc_call()
    check = check_layer(adapter, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()


def test_a_rule_dropping_the_blank_gradient_is_caught():
    adapter, shape = _ctc_call()
    check = check_layer(adapter, CTCBlankGradientDropped, input_shape=shape, seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()


def test_a_rule_must_return_a_gradient_for_every_input_of_the_call():
    adapter, shape = _ctc_call()
    check = check_layer(adapter, CTCGradientForEveryInput, input_shape=shape, seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "error", check.summary()
    assert "4 input(s)" in check.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ctc_loss_registry_configurations_pass(seed):
    result = check_registry([knn.CTCLoss], seed=seed)
    verdicts = [c.check.verdict for c in result.checks]
    assert verdicts == ["pass"] * 3, [c.check.reason for c in result.checks]
    assert all("companions" in c.config for c in result.checks)


# ------------------------------------------------------------------ a user's layer
class PickLogit(keras.layers.Layer):
    """``logits[b, labels[b]]``: a floating input and an integer one."""

    def call(self, logits, labels):
        return ops.take_along_axis(logits, labels[:, None], axis=1)[:, 0]


class BackwardPickLogit(BackwardNonLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        logits, labels = input
        one_hot = ops.one_hot(labels, logits.shape[-1], dtype=gradient.dtype)
        return [one_hot * gradient[:, None], ops.zeros(ops.shape(labels), dtype=gradient.dtype)]


class PickLogitWrongColumn(BackwardPickLogit):
    """Wrong: the gradient goes to the next column."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        grads = super().call_on_reshaped_gradient(gradient, input)
        return [ops.roll(grads[0], 1, axis=1), grads[1]]


def _pick_logit() -> PackedCall:
    return PackedCall(PickLogit(), [(4,)], [{INPUT_KEY: 0}, {INPUT_KEY: 1}],
                      companions=CompanionInputs({1: np.array(2, "int32")}))


def test_a_users_layer_with_an_integer_input_is_checked_on_its_float64_clone():
    check = check_layer(_pick_logit(), BackwardPickLogit, input_shape=(4,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()
    assert check.reference.float64_clone, check.reference.clone_note


def test_a_users_wrong_rule_with_an_integer_input_is_caught():
    check = check_layer(_pick_logit(), PickLogitWrongColumn, input_shape=(4,), seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()


# ------------------------------------------------- sparse_categorical_crossentropy
class SparseCrossentropyWithoutSoftmax(BackwardSparseCategoricalCrossentropyOp):
    """Wrong: ``-onehot(t) g`` (forgets the softmax term ``softmax(z) g``)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        results = super().call_on_reshaped_gradient(gradient, input)
        logits = ops.cast(input[1], gradient.dtype)
        results[1] = results[1] - gradient[..., None] * ops.softmax(logits, axis=-1)
        return results


def _sparse_crossentropy():
    target = np.array([2, 0, 3], "int32")
    return packed(knn.SparseCategoricalCrossentropy(from_logits=True, axis=-1), (3, 4),
                  companions=CompanionInputs({0: target}))


def test_sparse_crossentropy_rule_passes_with_its_integer_target():
    layer, shape = _sparse_crossentropy()
    check = check_layer(layer, input_shape=shape, seed=0, examples=EXAMPLES)
    assert check.verdict == "pass", check.summary()


def test_sparse_crossentropy_without_softmax_is_caught():
    layer, shape = _sparse_crossentropy()
    check = check_layer(layer, SparseCrossentropyWithoutSoftmax, input_shape=shape, seed=0,
                        examples=EXAMPLES)
    assert check.verdict == "fail", check.summary()
