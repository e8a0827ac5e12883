"""Configurations of the layers of ``keras.applications`` models with native rules:
CustomScaleLayer (InceptionResNetV2, two inputs), LayerScale and StochasticDepth (ConvNeXt)."""

from __future__ import annotations

from hypothesis import strategies as st

from jacverify.check.layer_configs._common import (
    finish,
    layer_strategy,
    sizes,
    small_floats,
    weight_seeds,
)
from jacverify.keras_internals import CustomScaleLayer, LayerScale, StochasticDepth


@layer_strategy
def custom_scale_layer(draw):
    """``x + scale * y`` of two inputs of the same shape."""
    shape = draw(sizes(draw(st.integers(1, 3)), budget=16, high=4))
    layer = CustomScaleLayer(draw(st.sampled_from([0.17, 0.1, 0.2, 1.0, -0.5])))
    return finish(layer, [shape, shape], 0)


@layer_strategy
def layer_scale(draw):
    """``gamma * x`` with a random ``gamma`` per channel (the last axis)."""
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    layer = LayerScale(draw(small_floats(-1.0, 1.0)), shape[-1])
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def stochastic_depth(draw):
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    return finish(StochasticDepth(draw(st.sampled_from([0.0, 0.1, 0.5]))), shape, 0)


STRATEGIES = {
    CustomScaleLayer: custom_scale_layer,
    LayerScale: layer_scale,
    StochasticDepth: stochastic_depth,
}
UNSUPPORTED: dict = {}
