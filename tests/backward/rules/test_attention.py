"""Rules of MultiHeadAttention, GroupQueryAttention, Attention and AdditiveAttention against
torch autograd of models using them (masks, causal masks, gates, attention axes, separate keys),
with extra Jacobian axes and save/load; wrong rules rejected."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward, get_backward_rule, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd

registered_rules()

L = keras.layers
MHARule = get_backward_rule(L.MultiHeadAttention)
AttentionRule = get_backward_rule(L.Attention)


def _randomize(layer, seed=5):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(0.5 * rng.standard_normal(weight.shape))


def _inputs(model, batch=3, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape = (batch, *t.shape[1:])
        if t.dtype == "bool":
            mask = rng.random(shape) > 0.3
            mask[..., 0] = True  # no fully masked row
            xs.append(mask)
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    return xs


def _mha(dtype="float32", call=None, **kwargs):
    q, v = keras.Input((4, 6), dtype=dtype), keras.Input((5, 6), dtype=dtype)
    layer = L.MultiHeadAttention(**{"num_heads": 2, "key_dim": 3, "dtype": dtype, **kwargs})
    model = keras.Model([q, v], layer(q, v, **(call or {})))
    _randomize(layer)
    return model


def _self_attention(layer, call=None, dtype="float32"):
    x = keras.Input((5, 6), dtype=dtype)
    model = keras.Model(x, layer(x, x, **(call or {})))
    _randomize(layer)
    return model


def _mha_with_key_and_mask():
    q, v, k = keras.Input((4, 6)), keras.Input((5, 6)), keras.Input((5, 6))
    mask = keras.Input((4, 5), dtype="bool")
    layer = L.MultiHeadAttention(2, 3)
    model = keras.Model([q, v, k, mask], layer(q, v, key=k, attention_mask=mask))
    _randomize(layer)
    return model


def _mha_axes():
    q, v = keras.Input((3, 4, 6)), keras.Input((3, 4, 6))
    layer = L.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    model = keras.Model([q, v], layer(q, v))
    _randomize(layer)
    return model


def _attention(cls, three=False, call=None, **kwargs):
    q, v = keras.Input((4, 6)), keras.Input((5, 6))
    inputs = [q, v] + ([keras.Input((5, 6))] if three else [])
    layer = cls(**kwargs)
    model = keras.Model(inputs, layer(inputs, **(call or {})))
    _randomize(layer)
    return model


def _attention_with_masks():
    q, v = keras.Input((4, 6)), keras.Input((5, 6))
    q_mask, v_mask = keras.Input((4,), dtype="bool"), keras.Input((5,), dtype="bool")
    layer = L.Attention(use_scale=True)
    model = keras.Model([q, v, q_mask, v_mask], layer([q, v], mask=[q_mask, v_mask]))
    _randomize(layer)
    return model


MODELS = {
    "mha": lambda: _mha(),
    "mha_value_dim_no_bias": lambda: _mha(value_dim=4, output_shape=5, use_bias=False),
    "mha_gate": lambda: _mha(use_gate=True),
    "mha_dropout_is_identity": lambda: _mha(dropout=0.3),
    "mha_sliding_window": lambda: _mha(sliding_window=2),
    "mha_self_causal": lambda: _self_attention(L.MultiHeadAttention(2, 3),
                                               {"use_causal_mask": True}),
    "mha_key_and_attention_mask": _mha_with_key_and_mask,
    "mha_attention_axes": _mha_axes,
    "gqa": lambda: _self_attention(L.GroupQueryAttention(3, 4, 2)),
    "gqa_one_kv_head_gate_causal": lambda: _self_attention(
        L.GroupQueryAttention(3, 4, 1, use_gate=True), {"use_causal_mask": True}),
    "attention_dot": lambda: _attention(L.Attention),
    "attention_scaled": lambda: _attention(L.Attention, use_scale=True),
    "attention_concat_with_key": lambda: _attention(L.Attention, three=True,
                                                    score_mode="concat", use_scale=True),
    "attention_causal": lambda: _attention(L.Attention, call={"use_causal_mask": True}),
    "attention_masks": _attention_with_masks,
    "additive_attention": lambda: _attention(L.AdditiveAttention),
    "additive_attention_no_scale_with_key": lambda: _attention(L.AdditiveAttention,
                                                               three=True, use_scale=False),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_attention_rules_match_autograd(name, tmp_path):
    model = MODELS[name]()
    saved = {"mha_gate", "gqa", "attention_masks", "mha_key_and_attention_mask"}
    save = tmp_path / "b.keras" if name in saved else None
    assert_model_matches_autograd(model, _inputs(model), save_to=save)


def test_multi_head_attention_float64():
    model = _mha("float64")
    # Keras's dot_product_attention computes float64 in float32 on torch (its result_type maps
    # float64 to float32): autograd of the model is float32-accurate; the rule's result is
    # float64.
    backward = assert_model_matches_autograd(model, _inputs(model, dtype="float64"), rtol=1e-5,
                                             atol=1e-6)
    xs = _inputs(model, dtype="float64")
    g = np.ones((3, 4, 6))
    assert keras.ops.convert_to_numpy(backward(xs + [g])[0]).dtype == np.float64


def test_keras_masks_cleared_by_multi_head_attention_are_recovered():
    """MultiHeadAttention clears its inputs' Keras masks when the model is built; the builder
    recomputes them (here Masking's), as Keras does at run time."""
    x = keras.Input((6, 4))
    h = L.Masking(0.25)(x)
    layer = L.MultiHeadAttention(2, 3)
    y = L.GlobalAveragePooling1D()(layer(h, h))
    model = keras.Model(x, y)
    _randomize(layer)
    data = np.random.default_rng(1).standard_normal((3, 6, 4)).astype("float32")
    data[0, 2] = data[1, 0] = data[2, 5] = 0.25
    assert_model_matches_autograd(model, [data])


def test_return_attention_scores_is_refused():
    q = keras.Input((4, 6))
    out, _ = L.MultiHeadAttention(2, 3)(q, q, return_attention_scores=True)
    with pytest.raises(ValueError):
        clone_to_backward(keras.Model(q, out))


# ------------------------------------------------------------ the tests can fail: wrong rules
class _MHAWithoutScale(MHARule):
    """Forgets the 1/sqrt(key_dim) factor on the query gradient's path."""

    def _scale(self):
        return 1.0


class _AttentionWithoutSoftmaxCorrection(AttentionRule):
    """Scores' gradient ``p * g_p``: forgets ``- <g_p, p>``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        q, v = input
        scores = ops.einsum("bqd,btd->bqt", q, v)
        probs = ops.softmax(scores, axis=-1)
        g_v = ops.einsum("bqt,bqd->btd", probs, gradient)
        g_scores = probs * ops.einsum("bqd,btd->bqt", gradient, v)
        g_q = ops.einsum("bqt,btd->bqd", g_scores, v)
        g_k = ops.einsum("bqt,bqd->btd", g_scores, q)
        return [g_q, g_v + g_k]


def test_reference_rejects_wrong_attention_rules():
    model = _mha()
    with pytest.raises(AssertionError):
        assert_model_matches_autograd(model, _inputs(model),
                                      mapping={L.MultiHeadAttention: _MHAWithoutScale},
                                      extra_axes=())
    model = _attention(L.Attention)
    assert_model_matches_autograd(model, _inputs(model))
    with pytest.raises(AssertionError):
        assert_model_matches_autograd(model, _inputs(model),
                                      mapping={L.Attention: _AttentionWithoutSoftmaxCorrection},
                                      extra_axes=())
