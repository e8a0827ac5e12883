"""What the builder records of each call (arguments, constants, masks), and masks in backward
models: separated from the data inputs, given to the rule as ``mask=``, no gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardLinearLayer, clone_to_backward
from jacverify.backward.graph import trace
from tests.backward.model_reference import assert_model_matches_autograd, functional


def _step(model, cls_name):
    (step,) = [s for s in trace(model).steps if type(s.operation).__name__ == cls_name]
    return step


def test_step_keeps_constants_and_placeholders():
    model = functional(lambda x: 2.0 - x, [(3,)])
    step = _step(model, "Subtract")
    assert step.args[0] == 2.0 and step.args[1] is model.inputs[0]
    assert step.call_arguments() == {"args": [2.0, {"__input__": 0}], "kwargs": {}}


def test_same_tensor_twice_gets_two_indices():
    model = functional(lambda x, y: ops.concatenate([x, y, x], axis=-1), [(3,), (2,)])
    step = _step(model, "Concatenate")
    assert len(step.inputs) == 3 and step.inputs[0] is step.inputs[2]
    assert step.call_arguments()["args"] == [[{"__input__": 0}, {"__input__": 1},
                                              {"__input__": 2}]]


def test_recorded_mask_is_not_a_data_input():
    x = keras.Input((5, 3))
    h = keras.layers.Masking(0.5)(x)
    y = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(4)(h))
    step = _step(keras.Model(x, y), "GlobalAveragePooling1D")
    assert len(step.inputs) == 1 and "bool" not in str(step.inputs[0].dtype)
    assert set(step.masks) == {"mask"} and step.mask is step.masks["mask"]
    assert step.call_arguments()["kwargs"] == {"mask": {"__mask__": "mask"}}


def test_attention_mask_and_call_flags_are_recorded():
    q, v = keras.Input((4, 8)), keras.Input((6, 8))
    m = keras.Input((4, 6), dtype="bool")
    out = keras.layers.MultiHeadAttention(2, 4)(q, v, attention_mask=m, use_causal_mask=False)
    step = _step(keras.Model([q, v, m], out), "MultiHeadAttention")
    assert step.inputs == [q, v]
    assert step.mask == {"attention_mask": m}
    assert step.call_arguments()["kwargs"]["use_causal_mask"] is False


def test_implicit_masks_are_found():
    """Keras fills ``mask`` in from the input's Keras mask without recording it when it
    converts the input's dtype; the builder finds it the same way."""
    x = keras.Input((5,), dtype="int32")
    e = keras.layers.Embedding(10, 4, mask_zero=True)(x)
    h = keras.layers.Dense(3, dtype="float64")(e)  # input cast: the mask is not recorded
    y = keras.layers.GlobalAveragePooling1D(dtype="float64")(h)
    step = _step(keras.Model(x, y), "GlobalAveragePooling1D")
    assert set(step.masks) == {"mask"}


# -------------------------------------------------------------------- masks in whole models
def _masked_rows(shape, value, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    x[0, 1] = value
    x[1, -1] = value
    x[2, 0] = value
    return x


@pytest.mark.parametrize("mask_value", [0.0, 0.5])
def test_masking_then_masked_pooling(mask_value, tmp_path):
    x = keras.Input((5, 3))
    h = keras.layers.Masking(mask_value)(x)
    h = keras.layers.Dense(4, activation="tanh")(h)
    y = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(x, y)
    # On masked rows torch autograd of Masking's `where` gives 0; with mask_value 0 the rule
    # gives 1 (Masking(0) is the identity). The pooling leaves masked rows out of its average,
    # so the model's gradient is 0 there either way.
    data = _masked_rows((3, 5, 3), mask_value)
    assert_model_matches_autograd(model, [data], save_to=tmp_path / "masked.keras")


def test_masking_zero_is_the_identity():
    from tests.backward.reference import make_rule

    layer = keras.layers.Masking(0.0)
    x = _masked_rows((3, 4, 2), 0.0)
    rule = make_rule(layer, x)
    assert rule.is_linear
    g = np.ones_like(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rule(g)), g)


def test_embedding_mask_reaches_the_pooling_and_gets_no_gradient(tmp_path):
    tokens = keras.Input((6,), dtype="int32")
    e = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    h = keras.layers.Dense(5, activation="relu")(e)
    y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h))
    feats = keras.Input((3,))
    model = keras.Model([tokens, feats], keras.layers.Concatenate()([y, feats]))
    ids = np.array([[1, 2, 0, 3, 0, 4], [0, 1, 1, 1, 2, 2], [5, 5, 5, 0, 0, 0]], "int32")
    f = np.random.default_rng(1).standard_normal((3, 3)).astype("float32")
    backward = assert_model_matches_autograd(model, [ids, f], save_to=tmp_path / "emb.keras")
    g = np.ones((3, 5), "float32")
    grad_ids, _ = backward([ids, f, g])
    assert not np.any(keras.ops.convert_to_numpy(grad_ids))


def test_softmax_with_a_mask_tensor(tmp_path):
    x, m = keras.Input((4, 5)), keras.Input((4, 5), dtype="bool")
    model = keras.Model([x, m], keras.layers.Softmax()(x, mask=m))
    rng = np.random.default_rng(2)
    data = [rng.standard_normal((3, 4, 5)).astype("float32"), rng.random((3, 4, 5)) > 0.3]
    assert_model_matches_autograd(model, data, save_to=tmp_path / "softmax.keras")


class _SeesMask(BackwardLinearLayer):
    """Records the mask it receives (a rule for a layer whose call takes a mask)."""

    seen = []

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        type(self).seen.append(mask)
        return ops.broadcast_to(ops.expand_dims(gradient, 1),
                                (ops.shape(gradient)[0], *self.input_dim_wo_batch))


def test_rule_receives_the_mask_argument():
    x = keras.Input((5, 3))
    h = keras.layers.Masking(0.5)(x)
    pool = keras.layers.GlobalAveragePooling1D()
    y = pool(h)
    _SeesMask.seen = []
    backward = clone_to_backward(keras.Model(x, y),
                                 {keras.layers.GlobalAveragePooling1D: _SeesMask})
    backward([_masked_rows((3, 5, 3), 0.5), np.ones((3, 3), "float32")])
    mask = keras.ops.convert_to_numpy(_SeesMask.seen[-1])
    assert mask.shape == (3, 5) and mask.dtype == bool
    assert not mask[0, 1] and not mask[1, -1] and mask[0, 0]
