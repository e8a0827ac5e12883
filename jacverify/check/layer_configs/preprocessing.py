"""Configurations of the preprocessing layers: Rescaling, Normalization, Resizing, CenterCrop,
and the random image augmentations (the identity at inference)."""

from __future__ import annotations

import math

import keras
import numpy as np
from hypothesis import strategies as st

from jacverify.backward.rules.preprocessing.random_augmentation import IDENTITY_AT_INFERENCE
from jacverify.check.layer_configs._common import (
    data_formats,
    finish,
    image_shape,
    layer_strategy,
    packed,
    sizes,
    small_floats,
)

L = keras.layers


@layer_strategy
def rescaling(draw):
    """``Rescaling`` by a scalar (negative, tiny or large) or one scale per channel."""
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    if draw(st.booleans()):
        scale = [draw(small_floats(-3.0, 3.0)) for _ in range(shape[-1])]
    else:
        scale = draw(st.sampled_from([1.0 / 255.0, 2.0, -0.5, 1e-3, 100.0]))
    layer = L.Rescaling(scale, offset=draw(st.sampled_from([0.0, -1.0, 0.5])))
    return finish(layer, shape, 0)


@layer_strategy
def normalization(draw):
    """``Normalization`` with given statistics per feature (some variances zero, where the
    layer divides by epsilon), along one axis, several or none, inverted or not."""
    rank = draw(st.integers(1, 3))
    shape = draw(sizes(rank, budget=24, high=4))
    axes = draw(st.sampled_from(["last", "none", "several"] if rank > 1 else ["last", "none"]))
    if axes == "last":
        axis, kept = -1, (shape[-1],)
    elif axes == "none":
        axis, kept = None, ()
    else:
        axis = (1, rank)
        kept = (shape[0], shape[-1])
    size = math.prod(kept)
    mean = [draw(small_floats(-2.0, 2.0)) for _ in range(size)]
    variance = [draw(st.sampled_from([1.0, 0.25, 4.0, 0.0, 1e-3])) for _ in range(size)]
    if not kept:
        mean, variance = mean[0], variance[0]
    else:
        mean = np.reshape(mean, kept).tolist()
        variance = np.reshape(variance, kept).tolist()
    layer = L.Normalization(axis=axis, mean=mean, variance=variance,
                            invert=draw(st.booleans()))
    return finish(layer, shape, 0)


@layer_strategy
def resizing(draw):
    """``Resizing`` up and down, every interpolation with a rule, antialias, cropping or
    padding to the aspect ratio, both data formats."""
    channels = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=32 // channels, high=7))
    interpolation = draw(st.sampled_from(["bilinear", "nearest", "bicubic"]))
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    # Not antialias to a width of 1, as for keras.ops.image.resize (see its configuration):
    # torch's forward repeats the first output row there while its autograd interpolates.
    antialias = interpolation != "nearest" and width > 1 and draw(st.booleans())
    mode = draw(st.sampled_from([None, "crop", "pad"]))
    layer = L.Resizing(
        height, width, interpolation=interpolation,
        antialias=antialias, crop_to_aspect_ratio=mode == "crop",
        pad_to_aspect_ratio=mode == "pad", data_format=data_format,
    )
    return finish(layer, image_shape(spatial, channels, data_format), 0)


@layer_strategy
def center_crop(draw):
    """``CenterCrop`` to a smaller target (a crop) or a larger one (Keras resizes)."""
    channels = draw(st.integers(1, 2))
    data_format = draw(data_formats)
    spatial = draw(sizes(2, budget=32 // channels, high=7))
    layer = L.CenterCrop(draw(st.integers(1, 6)), draw(st.integers(1, 6)),
                         data_format=data_format)
    return finish(layer, image_shape(spatial, channels, data_format), 0)


#: Positional arguments the augmentations need (the others have defaults).
_AUGMENTATION_ARGUMENTS = {
    "RandomBrightness": (0.3,), "RandomContrast": (0.3,), "RandomCrop": (3, 3),
    "RandomRotation": (0.2,), "RandomTranslation": (0.2, 0.2), "RandomZoom": (0.2,),
    "RandomHue": (0.3,), "RandomSaturation": (0.3,), "RandomSharpness": (0.3,),
    "RandomShear": (0.3,), "RandomColorDegeneration": (0.3,), "RandomPosterization": (4,),
    "Solarization": (0.5,), "RandomGaussianBlur": (0.5,), "RandomErasing": (0.5,),
}


def augmentation(layer_class) -> st.SearchStrategy:
    """A random image augmentation on a small RGB image, called at inference (its rule: the
    identity). These layers default to ``training=True`` when called directly: the adapter
    calls them with ``training=False``, as a model at inference does."""

    @layer_strategy
    def draw_layer(draw):
        spatial = draw(sizes(2, low=3, budget=16, high=4))
        layer = layer_class(*_AUGMENTATION_ARGUMENTS.get(layer_class.__name__, ()))
        return packed(layer, (*spatial, 3))

    return draw_layer()


STRATEGIES = {
    L.Rescaling: rescaling,
    L.Normalization: normalization,
    L.Resizing: resizing,
    L.CenterCrop: center_crop,
    **{cls: (lambda cls=cls: augmentation(cls)) for cls in IDENTITY_AT_INFERENCE},
}
UNSUPPORTED: dict = {}
