"""Configurations of the reshaping layers: Cropping, Flatten, Permute, RepeatVector, Reshape,
UpSampling (sizes, interpolation) and ZeroPadding, in both data formats."""

from __future__ import annotations

import math

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import (
    data_formats,
    finish,
    image_shape,
    layer_strategy,
    sizes,
)

L = keras.layers


@layer_strategy
def cropping(draw, rank: int):
    """``CroppingND``: asymmetric crops leaving at least one position."""
    crops = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    lows = tuple(a + b + 1 for a, b in crops)
    channels = draw(st.integers(1, 2))
    spatial = draw(sizes(rank, low=lows, budget=64 // channels, high=6))
    if rank == 1:
        return finish(L.Cropping1D(cropping=crops[0]), (spatial[0], channels), 0)
    data_format = draw(data_formats)
    layer = getattr(L, f"Cropping{rank}D")(cropping=crops, data_format=data_format)
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def zero_padding(draw, rank: int):
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
    channels = draw(st.integers(1, 2))
    spatial = draw(sizes(rank, budget=32 // channels, high=4))
    if rank == 1:
        return finish(L.ZeroPadding1D(padding=pads[0]), (spatial[0], channels), 0)
    data_format = draw(data_formats)
    layer = getattr(L, f"ZeroPadding{rank}D")(padding=pads, data_format=data_format)
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def up_sampling(draw, rank: int):
    """``UpSamplingND``; 2D also with bilinear and bicubic interpolation."""
    size = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    channels = draw(st.integers(1, 2))
    spatial = draw(sizes(rank, budget=32 // channels, high=4))
    if rank == 1:
        return finish(L.UpSampling1D(size=size[0]), (spatial[0], channels), 0)
    data_format = draw(data_formats)
    kwargs = {}
    if rank == 2:
        kwargs["interpolation"] = draw(st.sampled_from(["nearest", "bilinear", "bicubic"]))
    layer = getattr(L, f"UpSampling{rank}D")(size=size, data_format=data_format, **kwargs)
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def flatten(draw):
    rank = draw(st.integers(1, 4))
    shape = draw(sizes(rank, budget=32, high=4))
    data_format = draw(data_formats)
    return finish(L.Flatten(data_format=data_format), shape, 0)


@layer_strategy
def permute(draw):
    rank = draw(st.integers(2, 4))
    shape = draw(sizes(rank, budget=32, high=4))
    dims = draw(st.permutations(list(range(1, rank + 1))))
    return finish(L.Permute(tuple(dims)), shape, 0)


@layer_strategy
def repeat_vector(draw):
    shape = (draw(st.integers(1, 6)),)
    return finish(L.RepeatVector(draw(st.integers(1, 4))), shape, 0)


@layer_strategy
def reshape(draw):
    """``Reshape`` to a target of another rank, with or without a ``-1``."""
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    n = math.prod(shape)
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    first = draw(st.sampled_from(divisors))
    target = [first, n // first]
    if draw(st.booleans()):
        target = [n // first, 1, first]
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return finish(L.Reshape(tuple(target)), shape, 0)


STRATEGIES = {
    **{getattr(L, f"Cropping{r}D"): (lambda r=r: cropping(r)) for r in (1, 2, 3)},
    **{getattr(L, f"ZeroPadding{r}D"): (lambda r=r: zero_padding(r)) for r in (1, 2, 3)},
    **{getattr(L, f"UpSampling{r}D"): (lambda r=r: up_sampling(r)) for r in (1, 2, 3)},
    L.Flatten: flatten,
    L.Permute: permute,
    L.RepeatVector: repeat_vector,
    L.Reshape: reshape,
}
UNSUPPORTED: dict = {}
