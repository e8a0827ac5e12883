"""Configurations of the normalization layers: BatchNormalization (inference, with random
moving statistics), LayerNormalization, GroupNormalization, UnitNormalization and
RMSNormalization, over axes, epsilon, center, scale and rms_scaling."""

from __future__ import annotations

import math

import keras
from hypothesis import strategies as st

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


def _torch_layer_norm_axes(axis, rank: int):
    """Axes Keras' LayerNormalization accepts on torch: it hands contiguous axes to torch's
    ``layer_norm``, which normalizes trailing axes only, so contiguous axes are extended to
    the last one."""
    axes = sorted(a % (rank + 1) for a in ([axis] if isinstance(axis, int) else axis))
    contiguous = axes == list(range(axes[0], axes[-1] + 1))
    if contiguous and axes[-1] != rank:
        return list(range(axes[0], rank + 1))
    return axis


@layer_strategy
def layer_normalization(draw):
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    rms_scaling = draw(st.booleans())
    axis = draw(_axis(rank))
    if not rms_scaling:
        axis = _torch_layer_norm_axes(axis, rank)
    layer = L.LayerNormalization(
        axis=axis, epsilon=draw(epsilons), center=draw(st.booleans()),
        scale=draw(st.booleans()), rms_scaling=rms_scaling,
    )
    return finish(layer, _two_normalized(shape, axis, rank), draw(weight_seeds))


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
    """``RMSNormalization`` over the trailing axes (torch's ``rms_norm``, which Keras calls,
    normalizes trailing axes only)."""
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    first = draw(st.integers(1, rank))
    axis = -1 if first == rank else list(range(first, rank + 1))
    layer = L.RMSNormalization(axis=axis, epsilon=draw(epsilons))
    return finish(layer, _two_normalized(shape, axis, rank), draw(weight_seeds))


STRATEGIES = {
    L.BatchNormalization: batch_normalization,
    L.LayerNormalization: layer_normalization,
    L.GroupNormalization: group_normalization,
    L.UnitNormalization: unit_normalization,
    L.RMSNormalization: rms_normalization,
}
UNSUPPORTED: dict = {}
