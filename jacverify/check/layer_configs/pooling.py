"""Configurations of the pooling layers: max and average pooling (pool sizes, strides, padding),
global pooling (keepdims) and adaptive pooling (output sizes), in both data formats."""

from __future__ import annotations

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
def pooling(draw, kind: str, rank: int):
    """``MaxPoolingND`` / ``AveragePoolingND``: windows overlapping (stride below the pool),
    tiling or skipping; ``same`` padding with even and odd remainders."""
    pool = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strides = None if draw(st.booleans()) else tuple(draw(st.integers(1, 3)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    channels = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    # Keras' "same" average pooling in 3D fails on torch for inputs smaller than the pool.
    small_ok = padding == "same" and not (kind == "Average" and rank == 3)
    low = 1 if small_ok else pool
    spatial = draw(sizes(rank, low=low, budget=64 // channels, high=7))
    layer = getattr(L, f"{kind}Pooling{rank}D")(
        pool_size=pool if rank > 1 else pool[0],
        strides=strides if strides is None or rank > 1 else strides[0],
        padding=padding, data_format=data_format,
    )
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def global_pooling(draw, kind: str, rank: int):
    channels = draw(st.integers(1, 3))
    data_format = draw(data_formats)
    spatial = draw(sizes(rank, budget=48 // channels, high=5))
    layer = getattr(L, f"Global{kind}Pooling{rank}D")(
        data_format=data_format, keepdims=draw(st.booleans())
    )
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def adaptive_pooling(draw, kind: str, rank: int):
    """``Adaptive{Max,Average}PoolingND``: output sizes below, equal to and above the input's
    (overlapping windows)."""
    channels = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    spatial = draw(sizes(rank, budget=48 // channels, high=7))
    output = tuple(draw(st.integers(1, n + 1)) for n in spatial)
    layer = getattr(L, f"Adaptive{kind}Pooling{rank}D")(
        output_size=output if rank > 1 else output[0], data_format=data_format
    )
    return finish(layer, image_shape(spatial, channels, data_format), 0)


STRATEGIES = {
    **{
        getattr(L, f"{kind}Pooling{r}D"): (lambda kind=kind, r=r: pooling(kind, r))
        for kind in ("Max", "Average") for r in (1, 2, 3)
    },
    **{
        getattr(L, f"Global{kind}Pooling{r}D"): (lambda kind=kind, r=r: global_pooling(kind, r))
        for kind in ("Max", "Average") for r in (1, 2, 3)
    },
    **{
        getattr(L, f"Adaptive{kind}Pooling{r}D"): (
            lambda kind=kind, r=r: adaptive_pooling(kind, r)
        )
        for kind in ("Max", "Average") for r in (1, 2, 3)
        if hasattr(L, f"Adaptive{kind}Pooling{r}D")
    },
}
UNSUPPORTED: dict = {}
