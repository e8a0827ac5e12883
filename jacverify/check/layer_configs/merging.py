"""Configurations of the merge layers (several inputs): Add, Subtract, Multiply, Average,
Maximum, Minimum (same shapes, broadcast inputs, lower-rank inputs), Concatenate (axes) and Dot
(axes, normalize)."""

from __future__ import annotations

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import finish, layer_strategy, sizes

L = keras.layers


@st.composite
def broadcast_shapes(draw, n_inputs: int) -> list:
    """``n_inputs`` shapes that Keras' merge layers combine: equal, with size-1 axes broadcast,
    or of lower rank (expanded at axis 1)."""
    full = draw(sizes(draw(st.integers(1, 3)), budget=12, high=4))
    shapes = []
    for _ in range(n_inputs):
        how = draw(st.sampled_from(["same", "same", "ones", "lower"]))
        if how == "ones":
            shape = tuple(1 if draw(st.booleans()) else n for n in full)
        elif how == "lower" and len(full) > 1:
            shape = full[len(full) - draw(st.integers(1, len(full) - 1)):]
        else:
            shape = full
        shapes.append(tuple(shape))
    if all(len(s) < len(full) or s != full for s in shapes) and draw(st.booleans()):
        shapes[draw(st.integers(0, n_inputs - 1))] = full
    return shapes


@layer_strategy
def elementwise(draw, layer_class, n_inputs=None):
    n = n_inputs or draw(st.integers(2, 3))
    return finish(layer_class(), draw(broadcast_shapes(n)), 0)


@layer_strategy
def concatenate(draw):
    """``Concatenate`` along any non-batch axis (negative or not) of 2 or 3 inputs."""
    rank = draw(st.integers(1, 3))
    base = list(draw(sizes(rank, budget=12, high=4)))
    axis = draw(st.integers(1, rank))
    shapes = []
    for _ in range(draw(st.integers(2, 3))):
        shape = list(base)
        shape[axis - 1] = draw(st.integers(1, 3))
        shapes.append(tuple(shape))
    axis = draw(st.sampled_from([axis, axis - rank - 1]))
    return finish(L.Concatenate(axis=axis), shapes, 0)


@layer_strategy
def dot(draw):
    """``Dot`` of rank-2 to rank-4 inputs along any pair of axes, normalized or not."""
    ranks = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    k = draw(st.integers(1, 4))
    shapes, axes = [], []
    for rank in ranks:
        shape = list(draw(sizes(rank, budget=8, high=3)))
        axis = draw(st.integers(1, rank))
        shape[axis - 1] = k
        shapes.append(tuple(shape))
        axes.append(draw(st.sampled_from([axis, axis - rank - 1])))
    if ranks == (1, 1) or (axes[0] == axes[1] and draw(st.booleans())):
        axes = axes[0] if axes[0] == axes[1] else axes
    return finish(L.Dot(axes=axes, normalize=draw(st.booleans())), shapes, 0)


STRATEGIES = {
    L.Add: lambda: elementwise(L.Add),
    L.Subtract: lambda: elementwise(L.Subtract, 2),
    L.Multiply: lambda: elementwise(L.Multiply),
    L.Average: lambda: elementwise(L.Average),
    L.Maximum: lambda: elementwise(L.Maximum),
    L.Minimum: lambda: elementwise(L.Minimum),
    L.Concatenate: concatenate,
    L.Dot: dot,
}
UNSUPPORTED: dict = {}
