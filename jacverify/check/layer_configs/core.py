"""Configurations of the core layers: Dense, EinsumDense, Embedding, Identity, Masking."""

from __future__ import annotations

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import (
    activations,
    finish,
    layer_strategy,
    sizes,
    weight_seeds,
)
from jacverify.check.layer_configs.activations import relu_layers

L = keras.layers
#: Activations normalizing over the last axis.
SOFTMAX_LIKE = ("softmax", "log_softmax", "sparsemax")


@layer_strategy
def layer_activations(draw):
    """A named activation, or now and then a configured ReLU layer."""
    if draw(st.integers(0, 5)) == 5:
        return draw(relu_layers())
    return draw(activations)


@layer_strategy
def dense(draw):
    """``Dense`` on rank-1 to rank-3 inputs, every activation, with or without bias."""
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24))
    activation = draw(layer_activations())
    low = 2 if activation in SOFTMAX_LIKE else 1  # over one unit they are constant
    layer = L.Dense(draw(st.integers(low, 4)), activation=activation,
                    use_bias=draw(st.booleans()))
    return finish(layer, shape, draw(weight_seeds))


# (equation, output shape from the input shape and a drawn size, input rank, bias axes)
_EINSUM = (
    ("ab,bc->ac", lambda shape, n: (n,), 1, ("c", None)),
    ("abc,cd->abd", lambda shape, n: (shape[0], n), 2, ("d", None)),
    ("abc,cd->abd", lambda shape, n: (None, n), 2, ("d",)),
    ("abc,cde->abde", lambda shape, n: (shape[0], n, 2), 2, ("de", "e", None)),
    ("abc,bcd->ad", lambda shape, n: (n,), 2, ("d", None)),
    ("abc,cd->ad", lambda shape, n: (n,), 2, (None,)),  # b summed without the kernel
    ("abc,bd->abd", lambda shape, n: (shape[0], n), 2, ("bd", None)),  # c summed, b kept
    ("...b,bc->...c", lambda shape, n: (n,), 2, ("c", None)),
    ("abcd,de->abce", lambda shape, n: (shape[0], shape[1], n), 3, ("e", None)),
)


@layer_strategy
def einsum_dense(draw):
    """``EinsumDense`` over projection, summed-away and kept axes, with bias axes and
    activations."""
    equation, output, rank, bias_axes = draw(st.sampled_from(_EINSUM))
    shape = draw(sizes(rank, budget=18, high=4))
    layer = L.EinsumDense(
        equation, output(shape, draw(st.integers(1, 3))),
        bias_axes=draw(st.sampled_from(bias_axes)), activation=draw(layer_activations()),
    )
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def embedding(draw):
    """``Embedding`` (integer inputs: not differentiable in them)."""
    layer = L.Embedding(draw(st.integers(2, 6)), draw(st.integers(1, 3)))
    return finish(layer, (draw(st.integers(1, 4)),), draw(weight_seeds), call=_embed)


def _embed(layer, inputs) -> None:
    layer(inputs.astype("int32"))


@layer_strategy
def identity(draw):
    return finish(L.Identity(), draw(sizes(draw(st.integers(1, 3)), budget=24)), 0)


@layer_strategy
def masking(draw):
    """``Masking`` with a zero mask value (the identity) or another (a jump on masked
    steps)."""
    shape = draw(sizes(2, budget=16))
    layer = L.Masking(mask_value=draw(st.sampled_from([0.0, 1.0, -1.0, 0.5])))
    return finish(layer, shape, 0)


STRATEGIES = {
    L.Dense: dense,
    L.EinsumDense: einsum_dense,
    L.Embedding: embedding,
    L.Identity: identity,
    L.Masking: masking,
}
UNSUPPORTED = {
    L.InputLayer: "InputLayer is a placeholder of a functional model, not callable on tensors: "
    "its rule (the identity) is exercised by every model check",
    L.ReversibleEmbedding: "ReversibleEmbedding takes integer token ids in its default call, "
    "and its differentiable mode (reverse=True) is a call argument, which check_layer() does "
    "not pass",
}
