"""Configurations of the activation layers: Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax."""

from __future__ import annotations

import math

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import (
    ACTIVATIONS,
    finish,
    layer_strategy,
    sizes,
    weight_seeds,
)

L = keras.layers


@st.composite
def relu_options(draw) -> dict:
    """``max_value``, ``negative_slope`` and ``threshold`` of a ReLU (Keras wants them >= 0,
    and a ``max_value`` above the threshold)."""
    threshold = draw(st.sampled_from([0.0, 0.5, 1.0]))
    max_value = draw(st.sampled_from([None, 6.0, 2.0, 1.5]))
    if max_value is not None and max_value <= threshold:
        max_value = threshold + 1.0
    slope = draw(st.sampled_from([0.0, 0.1, 0.3, 1.5]))
    return {"max_value": max_value, "negative_slope": slope, "threshold": threshold}


def relu_layers() -> st.SearchStrategy:
    """ReLU layers over their options (usable as another layer's ``activation``)."""
    return relu_options().map(lambda options: L.ReLU(**options))


@layer_strategy
def activation_layer(draw):
    """``Activation`` with every named activation with a derivative (``glu`` on an even last
    axis), or a configured ReLU layer."""
    name = draw(st.sampled_from((*ACTIVATIONS[1:], "glu", "relu_layer")))
    rank = draw(st.integers(1, 3))
    shape = list(draw(sizes(rank, budget=24)))
    if name == "glu":
        shape[-1] = 2 * max(1, shape[-1] // 2)
        activation = name
    elif name == "relu_layer":
        activation = draw(relu_layers())
    else:
        activation = name
    return finish(L.Activation(activation), shape, 0)


@layer_strategy
def relu(draw):
    """``ReLU`` over max_value, negative_slope and threshold."""
    shape = draw(sizes(draw(st.integers(1, 2)), budget=16))
    return finish(L.ReLU(**draw(relu_options())), shape, 0)


@layer_strategy
def leaky_relu(draw):
    slope = draw(st.sampled_from([0.3, 0.01, 0.2, 0.5, 1.0, 2.0]))
    shape = draw(sizes(draw(st.integers(1, 2)), budget=16))
    return finish(L.LeakyReLU(negative_slope=slope), shape, 0)


@layer_strategy
def prelu(draw):
    """``PReLU`` with random (signed) alphas, shared along some axes or none."""
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24))
    shared = draw(st.sets(st.integers(1, rank), max_size=rank - 1 if rank > 1 else 0))
    layer = L.PReLU(shared_axes=sorted(shared) or None)
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def elu(draw):
    alpha = draw(st.sampled_from([1.0, 0.5, 2.0, 0.1]))
    shape = draw(sizes(draw(st.integers(1, 2)), budget=16))
    return finish(L.ELU(alpha=alpha), shape, 0)


@layer_strategy
def softmax(draw):
    """``Softmax`` along one axis (negative or not) or several."""
    rank = draw(st.integers(1, 3))
    shape = list(draw(sizes(rank, budget=24)))
    axes = draw(st.sets(st.integers(1, rank), min_size=1, max_size=rank))
    if math.prod(shape[a - 1] for a in axes) == 1:  # a softmax over one value is constant
        shape[min(axes) - 1] = 2
    if len(axes) == 1:
        (axis,) = axes
        axis = draw(st.sampled_from([axis, axis - rank - 1]))
    else:
        axis = tuple(sorted(axes))
    return finish(L.Softmax(axis=axis), shape, 0)


STRATEGIES = {
    L.Activation: activation_layer,
    L.ReLU: relu,
    L.LeakyReLU: leaky_relu,
    L.PReLU: prelu,
    L.ELU: elu,
    L.Softmax: softmax,
}
UNSUPPORTED: dict = {}
