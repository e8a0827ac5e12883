"""Backward models of keras.applications architectures against torch autograd of the same
model (``weights=None``, ``classifier_activation=None``, the smallest input each accepts),
float32: relative error (max |difference| / max |autograd|) under 1e-4.

The default run checks three small architectures covering the application-specific pieces
(keras.ops arithmetic and hard-swish in MobileNetV3, Normalization, squeeze-and-excitation and
swish in EfficientNet, LayerNormalization/LayerScale in ConvNeXt is covered by the rule
tests); ``-m slow`` checks all thirteen that build on the torch backend (NASNet does not:
keras.applications refuses it on torch).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify import clone_to_backward
from tests.backward.model_reference import model_autograd_vjp

A = keras.applications

ARCHITECTURES = {
    "VGG16": (A.VGG16, 32),
    "ResNet50": (A.ResNet50, 32),
    "ResNet50V2": (A.ResNet50V2, 32),
    "InceptionV3": (A.InceptionV3, 75),
    "InceptionResNetV2": (A.InceptionResNetV2, 75),
    "Xception": (A.Xception, 71),
    "MobileNet": (A.MobileNet, 32),
    "MobileNetV2": (A.MobileNetV2, 32),
    "MobileNetV3Small": (A.MobileNetV3Small, 32),
    "DenseNet121": (A.DenseNet121, 32),
    "EfficientNetB0": (A.EfficientNetB0, 32),
    "EfficientNetV2B0": (A.EfficientNetV2B0, 32),
    "ConvNeXtTiny": (A.ConvNeXtTiny, 32),
}
DEFAULT = ["MobileNet", "MobileNetV3Small", "EfficientNetB0"]


def _relative_error(name, batch=2, seed=0):
    factory, size = ARCHITECTURES[name]
    keras.utils.set_random_seed(seed)
    model = factory(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    g = rng.standard_normal((batch, *model.output_shape[1:])).astype("float32")
    backward = clone_to_backward(model)
    got = keras.ops.convert_to_numpy(backward([x, g]))
    expected = model_autograd_vjp(model, x, g)[0]
    assert got.shape == expected.shape
    assert np.all(np.isfinite(got))
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("name", DEFAULT)
def test_small_applications(name):
    assert _relative_error(name) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(ARCHITECTURES) - set(DEFAULT)))
def test_all_applications(name):
    assert _relative_error(name) < 1e-4
