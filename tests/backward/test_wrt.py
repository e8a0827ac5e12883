"""``clone_to_backward(model, wrt=...)``: the gradient with respect to an inner tensor (the
output of an Embedding in a token model), against torch autograd."""

import keras
import numpy as np
import pytest
import torch
from keras import ops

from jacverify import clone_to_backward


def _token_model(vocabulary=11, length=6, width=4):
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    embedding = keras.layers.Embedding(vocabulary, width, name="embedding")
    h = embedding(tokens)
    h = keras.layers.Dense(5, activation="tanh")(h)
    h = keras.layers.LayerNormalization()(h) + h
    pooled = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(tokens, keras.layers.Dense(3)(pooled)), embedding


def _autograd_wrt_embedding(model, embedding, tokens, g):
    """torch autograd of the model's layers after the embedding, at its output."""
    e = ops.convert_to_tensor(embedding(tokens)).detach().requires_grad_(True)
    after = keras.Model(embedding.output, model.output)
    y = after(e)
    (grad,) = torch.autograd.grad(y, e, torch.tensor(g))
    return grad.numpy()


@pytest.mark.parametrize("as_layer", [False, True])
def test_gradient_with_respect_to_the_embedding_output(as_layer, tmp_path):
    model, embedding = _token_model()
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 11, (4, 6)).astype("int32")
    g = rng.standard_normal((4, 3)).astype("float32")
    backward = clone_to_backward(model, wrt=embedding if as_layer else embedding.output)
    got = ops.convert_to_numpy(backward([tokens, g]))
    expected = _autograd_wrt_embedding(model, embedding, tokens, g)
    assert got.shape == (4, 6, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    backward.save(tmp_path / "wrt.keras")
    again = keras.saving.load_model(tmp_path / "wrt.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(again([tokens, g])), expected, rtol=1e-4,
                               atol=1e-6)


def test_wrt_in_jacobian_mode_and_several_targets():
    model, embedding = _token_model()
    dense = model.layers[2]
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 11, (3, 6)).astype("int32")
    g = rng.standard_normal((3, 2, 3)).astype("float32")
    backward = clone_to_backward(model, gradient=keras.Input((2, 3)),
                                 wrt=[embedding.output, dense.output])
    got_e, got_d = (ops.convert_to_numpy(t) for t in backward([tokens, g]))
    assert got_e.shape == (3, 2, 6, 4) and got_d.shape == (3, 2, 6, 5)
    for row in range(2):
        expected = _autograd_wrt_embedding(model, embedding, tokens, g[:, row])
        np.testing.assert_allclose(got_e[:, row], expected, rtol=1e-4, atol=1e-6)


def test_integer_inputs_are_not_differentiated_without_wrt():
    model, _ = _token_model()
    tokens = np.zeros((2, 6), "int32")
    got = ops.convert_to_numpy(clone_to_backward(model)([tokens, np.ones((2, 3), "float32")]))
    assert got.shape == (2, 6) and not got.any()


def test_wrt_refuses_a_foreign_tensor_and_an_integer_one():
    model, _ = _token_model()
    with pytest.raises(ValueError, match="not a tensor of model"):
        clone_to_backward(model, wrt=keras.Input((6, 4)))
    with pytest.raises(ValueError, match="only floating"):
        clone_to_backward(model, wrt=model.inputs[0])
    shared = keras.layers.Dense(4)
    x = keras.Input((4,))
    twice = keras.Model(x, shared(shared(x)))
    with pytest.raises(ValueError, match="single output"):
        clone_to_backward(twice, wrt=shared)


def test_wrt_inside_a_nested_model():
    inner_in = keras.Input((4,))
    inner_dense = keras.layers.Dense(3, activation="tanh")
    inner = keras.Model(inner_in, keras.layers.Dense(2)(inner_dense(inner_in)), name="inner")
    x = keras.Input((4,))
    model = keras.Model(x, inner(keras.layers.Dense(4)(x)))
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((3, 4)).astype("float32")
    g = rng.standard_normal((3, 2)).astype("float32")
    got = ops.convert_to_numpy(clone_to_backward(model, wrt=inner_dense.output)([xs, g]))
    h = ops.convert_to_tensor(inner_dense(model.layers[1](xs))).detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(inner.layers[-1](h), h, torch.tensor(g))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
