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
from jacverify.examples.applications import ARCHITECTURES, build_application
from tests.backward.model_reference import model_autograd_vjp

DEFAULT = ["MobileNet", "MobileNetV3Small", "EfficientNetB0"]


def _relative_error(name, batch=2, seed=0):
    keras.utils.set_random_seed(seed)
    model, size = build_application(name)
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
