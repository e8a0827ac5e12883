"""Rules of ``keras.ops.image.rgb_to_hsv`` and ``hsv_to_rgb`` in functional models, against
torch autograd of the same model in float32 and float64 (both data formats), and the
conversion's tie and zero handling against the forward's one-sided differences."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional

TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}


def _images(shape, seed, low, high):
    return np.random.default_rng(seed).uniform(low, high, (3, *shape))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("function, low, high", [("rgb_to_hsv", -0.5, 1.5),
                                                 ("hsv_to_rgb", -1.5, 2.0)])
def test_color_conversion(function, low, high, data_format, dtype):
    shape = (4, 5, 3) if data_format == "channels_last" else (3, 4, 5)
    convert = getattr(ops.image, function)
    model = functional(lambda x: convert(x, data_format=data_format), [shape], dtype=dtype)
    x = _images(shape, 0, low, high).astype(dtype)
    assert_model_matches_autograd(model, x, extra_axes=(2,), **TOLERANCES[dtype])


def test_rgb_to_hsv_at_ties_is_between_the_one_sided_derivatives():
    """Grey pixels (r = g = b: saturation has a |.|-like kink) and ties of the maximum or the
    minimum: along each channel, the rule's value lies between the forward's one-sided
    derivatives (a valid subgradient). Black pixels (saturation jumps) get a finite value. (A
    tie of the minimum under a red maximum is a jump of the hue, which wraps from 0 to 1.)"""
    model = functional(lambda x: ops.image.rgb_to_hsv(x), [(1, 1, 3)], dtype="float64")
    x = np.array([[[[0.5, 0.5, 0.5]]], [[[0.7, 0.7, 0.2]]], [[[0.3, 0.9, 0.3]]],
                  [[[0.0, 0.0, 0.0]]]])
    g = np.random.default_rng(1).standard_normal(x.shape)
    got = ops.convert_to_numpy(clone_to_backward(model)([x, g]))
    assert np.all(np.isfinite(got))
    h = 1e-7
    base = ops.convert_to_numpy(model(x))
    for c in range(3):
        step = np.zeros_like(x)
        step[..., c] = h
        right = np.sum(g * (ops.convert_to_numpy(model(x + step)) - base), (1, 2, 3)) / h
        left = np.sum(g * (base - ops.convert_to_numpy(model(x - step))), (1, 2, 3)) / h
        low, high = np.minimum(left, right)[:3], np.maximum(left, right)[:3]
        value = got[:3, 0, 0, c]
        assert np.all((value >= low - 1e-5) & (value <= high + 1e-5)), (c, value, low, high)
