"""Rules of Embedding, ReversibleEmbedding and Masking against torch autograd (and by hand
where autograd's value is not the derivative); wrong rules rejected."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardLinearLayer, clone_to_backward, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()
L = keras.layers


def _randomize(layer, seed=3):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.standard_normal(weight.shape))


def test_embedding_of_integers_gets_no_gradient_and_no_rule_call():
    tokens = keras.Input((5,), dtype="int32")
    model = keras.Model(tokens, L.Dense(2)(L.Flatten()(L.Embedding(9, 3)(tokens))))
    backward = clone_to_backward(model)
    ids = np.random.default_rng(0).integers(0, 9, (2, 5)).astype("int32")
    grad = keras.ops.convert_to_numpy(backward([ids, np.ones((2, 2), "float32")]))
    assert grad.shape == (2, 5) and not grad.any()


def test_embedding_of_floats_is_piecewise_constant():
    layer = L.Embedding(9, 3)
    x = np.array([[1.2, 3.7, 0.1]], "float32")
    layer(x)
    rule = make_rule(layer, x)
    got = keras.ops.convert_to_numpy(rule([np.ones((1, 3, 3), "float32"), x]))
    assert got.shape == (1, 3) and not got.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [{}, {"tie_weights": False}, {"logit_soft_cap": 2.0},
                                    {"tie_weights": False, "logit_soft_cap": 0.5}])
def test_reversible_embedding_reverse(kwargs, dtype, tmp_path):
    x = keras.Input((4, 3), dtype=dtype)
    layer = L.ReversibleEmbedding(7, 3, dtype=dtype, **kwargs)
    layer.build((None,))
    _randomize(layer)
    model = keras.Model(x, layer(x, reverse=True))
    tolerances = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float64" else {}  # matmul in f32
    backward = assert_model_matches_autograd(model, save_to=tmp_path / "rev.keras",
                                             **tolerances)
    (rule,) = [r for r in backward.layers if type(r).__name__ == "BackwardReversibleEmbedding"]
    assert rule.is_linear == ("logit_soft_cap" not in kwargs)


def test_reversible_embedding_forward_direction():
    tokens = keras.Input((4,), dtype="int32")
    feats = keras.Input((4, 3))
    layer = L.ReversibleEmbedding(7, 3)
    h = L.Add()([layer(tokens), feats])
    model = keras.Model([tokens, feats], layer(h, reverse=True))
    ids = np.random.default_rng(0).integers(0, 7, (2, 4)).astype("int32")
    f = np.random.default_rng(1).standard_normal((2, 4, 3)).astype("float32")
    assert_model_matches_autograd(model, [ids, f])


@pytest.mark.parametrize("mask_value", [0.5, -1.0])
def test_masking_matches_autograd(mask_value):
    layer = L.Masking(mask_value)
    x = np.random.default_rng(0).standard_normal((3, 5, 2)).astype("float32")
    x[0, 1] = x[2, 4] = mask_value  # masked steps (a jump: both give the 0 of the flat piece)
    x[1, 2, 0] = mask_value  # one feature equal: not masked
    assert not make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x)


def test_masking_zero_is_the_identity_where_autograd_says_zero():
    layer = L.Masking(0.0)
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype("float32")
    x[0, 1] = 0.0
    rule = make_rule(layer, x)
    g = np.ones_like(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rule(g)), g)


class _MaskingAlwaysPasses(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return gradient


class _SoftCapWithoutTanhDerivative(BackwardLinearLayer):
    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.einsum("...o,oi->...i", gradient, self.layer.embeddings)


def test_reference_rejects_wrong_rules():
    layer = L.Masking(0.5)
    x = np.random.default_rng(0).standard_normal((3, 5, 2)).astype("float32")
    x[0, 1] = 0.5
    with pytest.raises(AssertionError, match="Not equal"):
        assert_rule_matches_autograd(layer, x, rule_class=_MaskingAlwaysPasses)
    x_in = keras.Input((4, 3))
    reversible = L.ReversibleEmbedding(7, 3, logit_soft_cap=0.5)
    reversible.build((None,))
    _randomize(reversible)
    model = keras.Model(x_in, reversible(x_in, reverse=True))
    with pytest.raises(AssertionError, match="Not equal"):
        assert_model_matches_autograd(
            model, mapping={L.ReversibleEmbedding: _SoftCapWithoutTanhDerivative},
            extra_axes=())
