"""Configurations of the convolutional layers: Conv1D/2D/3D, their transposes, DepthwiseConv1D/2D
and SeparableConv1D/2D, over kernel sizes, strides, dilation, padding, groups, depth
multipliers, output padding, data formats, activations and bias."""

from __future__ import annotations

import keras
from hypothesis import strategies as st

from jacverify.check.layer_configs._common import (
    data_formats,
    finish,
    image_shape,
    layer_strategy,
    sizes,
    weight_seeds,
)
from jacverify.check.layer_configs.core import layer_activations

L = keras.layers
#: Values of the input at most (a few configurations go over it when the kernel needs room).
BUDGET = {1: 64, 2: 64, 3: 64}


@st.composite
def geometry(draw, rank: int, *, dilation: bool = True) -> tuple:
    """``(kernel, strides, dilation)`` per axis: Keras refuses strides > 1 with dilation > 1."""
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if dilation and draw(st.booleans()):
        dilations = tuple(draw(st.integers(1, 2)) for _ in range(rank))
        strides = (1,) * rank
    else:
        dilations = (1,) * rank
        strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    return kernel, strides, dilations


def _lows(kernel, dilations, padding) -> tuple:
    """Smallest input sizes giving a non-empty output."""
    if padding != "valid":
        return (1,) * len(kernel)
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True))


@st.composite
def _conv_input(draw, rank, channels, kernel, dilations, padding, data_format) -> tuple:
    budget = max(1, BUDGET[rank] // channels)
    spatial = draw(sizes(rank, low=_lows(kernel, dilations, padding), budget=budget, high=7))
    return image_shape(spatial, channels, data_format)


def _one(values: tuple):
    """A single int for a 1D layer (as users write it), the tuple otherwise."""
    return values[0] if len(values) == 1 else values


@layer_strategy
def conv(draw, rank: int):
    """``ConvND`` with groups, every padding (``causal`` in 1D), both data formats."""
    kernel, strides, dilations = draw(geometry(rank))
    paddings = ["valid", "same", "causal"] if rank == 1 else ["valid", "same"]
    padding = draw(st.sampled_from(paddings))
    groups = draw(st.sampled_from([1, 1, 2]))
    channels = groups * draw(st.integers(1, 2))
    filters = groups * draw(st.integers(1, 2))
    data_format = draw(data_formats)
    shape = draw(_conv_input(rank, channels, kernel, dilations, padding, data_format))
    layer = getattr(L, f"Conv{rank}D")(
        filters, _one(kernel), strides=_one(strides), dilation_rate=_one(dilations),
        padding=padding, groups=groups, data_format=data_format,
        activation=draw(layer_activations()), use_bias=draw(st.booleans()),
    )
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def conv_transpose(draw, rank: int):
    """``ConvNDTranspose`` with output padding (below the stride), dilation, both paddings."""
    kernel, strides, dilations = draw(geometry(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    output_padding = None
    if draw(st.booleans()):
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
    channels = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    spatial = draw(sizes(rank, budget=max(1, 24 // channels), high=4))
    layer = getattr(L, f"Conv{rank}DTranspose")(
        draw(st.integers(1, 2)), _one(kernel), strides=_one(strides),
        dilation_rate=_one(dilations), padding=padding,
        output_padding=None if output_padding is None else _one(output_padding),
        data_format=data_format, activation=draw(layer_activations()),
        use_bias=draw(st.booleans()),
    )
    return finish(layer, image_shape(spatial, channels, data_format), draw(weight_seeds))


@layer_strategy
def depthwise_conv(draw, rank: int):
    """``DepthwiseConvND`` with depth multipliers."""
    kernel, strides, dilations = draw(geometry(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    channels = draw(st.integers(1, 3))
    data_format = draw(data_formats)
    shape = draw(_conv_input(rank, channels, kernel, dilations, padding, data_format))
    layer = getattr(L, f"DepthwiseConv{rank}D")(
        _one(kernel), strides=_one(strides), dilation_rate=_one(dilations), padding=padding,
        depth_multiplier=draw(st.integers(1, 2)), data_format=data_format,
        activation=draw(layer_activations()), use_bias=draw(st.booleans()),
    )
    return finish(layer, shape, draw(weight_seeds))


@layer_strategy
def separable_conv(draw, rank: int):
    """``SeparableConvND``: depthwise (with a depth multiplier) then pointwise."""
    kernel, strides, dilations = draw(geometry(rank))
    padding = draw(st.sampled_from(["valid", "same"]))
    channels = draw(st.integers(1, 3))
    data_format = draw(data_formats)
    shape = draw(_conv_input(rank, channels, kernel, dilations, padding, data_format))
    layer = getattr(L, f"SeparableConv{rank}D")(
        draw(st.integers(1, 3)), _one(kernel), strides=_one(strides),
        dilation_rate=_one(dilations), padding=padding,
        depth_multiplier=draw(st.integers(1, 2)), data_format=data_format,
        activation=draw(layer_activations()), use_bias=draw(st.booleans()),
    )
    return finish(layer, shape, draw(weight_seeds))


STRATEGIES = {
    **{getattr(L, f"Conv{r}D"): (lambda r=r: conv(r)) for r in (1, 2, 3)},
    **{getattr(L, f"Conv{r}DTranspose"): (lambda r=r: conv_transpose(r)) for r in (1, 2, 3)},
    **{getattr(L, f"DepthwiseConv{r}D"): (lambda r=r: depthwise_conv(r)) for r in (1, 2)},
    **{getattr(L, f"SeparableConv{r}D"): (lambda r=r: separable_conv(r)) for r in (1, 2)},
}
UNSUPPORTED: dict = {}
