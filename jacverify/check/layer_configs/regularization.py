"""Configurations of the regularization layers (the identity at inference): Dropout,
AlphaDropout, GaussianDropout, GaussianNoise, SpatialDropout1D/2D/3D, ActivityRegularization."""

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
rates = st.sampled_from([0.5, 0.1, 0.9])


@layer_strategy
def dropout(draw, layer_class, argument: str = "rate"):
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    return finish(layer_class(**{argument: draw(rates)}), shape, 0)


@layer_strategy
def spatial_dropout(draw, rank: int):
    channels = draw(st.integers(1, 3))
    spatial = draw(sizes(rank, budget=24 // channels, high=4))
    if rank == 1:
        return finish(L.SpatialDropout1D(draw(rates)), (spatial[0], channels), 0)
    data_format = draw(data_formats)
    layer = getattr(L, f"SpatialDropout{rank}D")(draw(rates), data_format=data_format)
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def activity_regularization(draw):
    shape = draw(sizes(draw(st.integers(1, 2)), budget=16))
    layer = L.ActivityRegularization(
        l1=draw(st.sampled_from([0.0, 0.01, 1.0])), l2=draw(st.sampled_from([0.0, 0.5]))
    )
    return finish(layer, shape, 0)


STRATEGIES = {
    L.Dropout: lambda: dropout(L.Dropout),
    L.AlphaDropout: lambda: dropout(L.AlphaDropout),
    L.GaussianDropout: lambda: dropout(L.GaussianDropout),
    L.GaussianNoise: lambda: dropout(L.GaussianNoise, "stddev"),
    **{getattr(L, f"SpatialDropout{r}D"): (lambda r=r: spatial_dropout(r)) for r in (1, 2, 3)},
    L.ActivityRegularization: activity_regularization,
}
UNSUPPORTED: dict = {}
