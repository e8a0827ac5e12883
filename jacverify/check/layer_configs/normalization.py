"""Configurations of the normalization layers: BatchNormalization (inference, with random
moving statistics), LayerNormalization, GroupNormalization, UnitNormalization and
RMSNormalization, over axes, epsilon, center, scale and rms_scaling."""

from __future__ import annotations

import math

import keras
from hypothesis import strategies as st

from jacverify.backward.rules.normalization._common import forward_axes
from jacverify.check.layer_configs._common import finish, layer_strategy, sizes, weight_seeds

L = keras.layers
epsilons = st.sampled_from([1e-3, 1e-5, 0.1, 1.0])


@st.composite
def _axis(draw, rank: int, several: bool = True):
    """One axis (negative or not) or, when ``several``, a list of axes."""
    if several and rank > 1 and draw(st.booleans()):
        return sorted(draw(st.sets(st.integers(1, rank), min_size=2, max_size=rank)))
    axis = draw(st.integers(1, rank))
    return draw(st.sampled_from([axis, axis - rank - 1]))


def _two_normalized(shape, axis, rank: int) -> tuple:
    """``shape`` with at least two values over the normalized ``axis``: normalizing a single
    value gives a constant whose zero derivative a float rule computes from terms of size
    ``1 / |x|``, a cancellation the checker cannot see (it knows no rule's intermediates)."""
    axes = [a % (rank + 1) for a in ([axis] if isinstance(axis, int) else axis)]
    shape = list(shape)
    if math.prod(shape[a - 1] for a in axes) < 2:
        shape[axes[0] - 1] = 2
    return tuple(shape)


@layer_strategy
def batch_normalization(draw):
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    layer = L.BatchNormalization(
        axis=draw(_axis(rank, several=False)), epsilon=draw(epsilons),
        center=draw(st.booleans()), scale=draw(st.booleans()),
    )
    return finish(layer, shape, draw(weight_seeds))


def _forward_shape(shape, axis, rank: int, fused: bool) -> tuple:
    """``shape`` with at least two normalized values on which Keras's forward runs. On torch,
    continuous axes (as given) go to ``F.layer_norm``/``F.rms_norm``, which normalize the
    trailing ``len(axis)`` axes and need their sizes to be those of ``axis``: the trailing
    sizes are set so, e.g. ``axis=1`` on a rank-3 input (see ``forward_axes``)."""
    shape = list(_two_normalized(shape, axis, rank))
    given = [a % (rank + 1) for a in ([axis] if isinstance(axis, int) else sorted(axis))]
    # In increasing order: where the two sets of axes overlap the sizes repeat.
    for a, b in zip(given, forward_axes(axis, rank + 1, "configuration", fused=fused),
                    strict=True):
        shape[b - 1] = shape[a - 1]
    return tuple(shape)


@layer_strategy
def layer_normalization(draw):
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    rms_scaling = draw(st.booleans())
    axis = draw(_axis(rank))
    shape = _forward_shape(shape, axis, rank, fused=not rms_scaling)
    layer = L.LayerNormalization(
        axis=axis, epsilon=draw(epsilons), center=draw(st.booleans()),
        scale=draw(st.booleans()), rms_scaling=rms_scaling,
    )
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def group_normalization(draw):
    """``GroupNormalization``: groups from one channel each to all channels in one."""
    rank = draw(st.integers(1, 3))
    axis = draw(_axis(rank, several=False))
    groups = draw(st.integers(1, 3))
    shape = list(draw(sizes(rank, budget=12, high=3)))
    shape[axis % (rank + 1) - 1] = groups * draw(st.integers(1, 2))
    layer = L.GroupNormalization(
        groups=groups, axis=axis, epsilon=draw(epsilons), center=draw(st.booleans()),
        scale=draw(st.booleans()),
    )
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def unit_normalization(draw):
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    axis = draw(_axis(rank))
    return finish(L.UnitNormalization(axis=axis), _two_normalized(shape, axis, rank), 0)


@layer_strategy
def rms_normalization(draw):
    """``RMSNormalization`` over one axis or continuous axes (on torch, ``rms_norm`` over the
    trailing axes; Keras's other path broadcasts the scale against the trailing axes without
    reshaping it, which fails for most axes that are not continuous)."""
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    first = draw(st.integers(1, rank))
    last = draw(st.integers(first, rank))
    axis = list(range(first, last + 1))
    axis = axis[0] if len(axis) == 1 and draw(st.booleans()) else axis
    shape = _forward_shape(shape, axis, rank, fused=True)
    layer = L.RMSNormalization(axis=axis, epsilon=draw(epsilons))
    return finish(layer, shape, draw(weight_seeds))


STRATEGIES = {
    L.BatchNormalization: batch_normalization,
    L.LayerNormalization: layer_normalization,
    L.GroupNormalization: group_normalization,
    L.UnitNormalization: unit_normalization,
    L.RMSNormalization: rms_normalization,
}
UNSUPPORTED: dict = {}
