"""Perspective transforms on whole batches inside checks: the batched computation equals
Keras' own bit for bit (and a hand computation), its gradient equals Keras' autograd
gradient, it is used only without autograd and where the configuration's first call agreed
with Keras, a wrong batching is caught by that first call, and Keras' own function is back
after the check."""

import itertools

import numpy as np
import pytest
import torch

from jacverify import check_layer, keras_internals
from jacverify.backward.graph import INPUT_KEY
from jacverify.backward.rules.ops.image_transform import BackwardPerspectiveTransformOp
from jacverify.check import batched_perspective
from jacverify.check.batched_perspective import (
    batched_perspective_transform,
    perspective_transform_batched,
)
from jacverify.check.checked_shortcut import CheckedShortcut
from jacverify.check.layer_configs._common import packed
from jacverify.keras_internals import ops_image as kimage

HEIGHT, WIDTH = 4, 5
#: The corners of a HEIGHT x WIDTH image, (x, y) per corner as Keras orders them.
CORNERS = np.array([[0, 0], [WIDTH - 1, 0], [0, HEIGHT - 1], [WIDTH - 1, HEIGHT - 1]],
                   dtype="float32")
#: Start points: the registry's dyadic scales and shifts, and a general homography (points
#: moved unevenly: a projective denominator that is not 1).
STARTS = {
    "shifted": CORNERS * 1.0 + np.array([-0.75, 0.5], dtype="float32"),
    "scaled": CORNERS * 0.75 + np.array([0.5, -0.25], dtype="float32"),
    "general": CORNERS + np.array([[0.3, -0.2], [0.1, 0.4], [-0.6, 0.2], [0.7, 0.9]],
                                  dtype="float32"),
}
MODES = list(itertools.product(["bilinear", "nearest"], [0.0, 0.5],
                               ["channels_last", "channels_first"], sorted(STARTS),
                               [torch.float32, torch.float64]))


def _images(data_format, dtype, batch=6, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    shape = ((batch, HEIGHT, WIDTH, channels) if data_format == "channels_last"
             else (batch, channels, HEIGHT, WIDTH))
    return torch.tensor(rng.standard_normal(shape), dtype=dtype)


def _keras(images, start, interpolation="bilinear", fill_value=0.0,
           data_format="channels_last"):
    """Keras' backend function, as the public op reaches it."""
    function = keras_internals.backend_image_function("perspective_transform")
    return function(images, start, CORNERS, interpolation, fill_value, data_format)


@pytest.fixture(autouse=True)
def fresh_configurations(monkeypatch):
    """Each test starts with no configuration compared yet."""
    monkeypatch.setattr(batched_perspective, "_shortcut", CheckedShortcut())


def test_a_hand_computed_transform():
    image = torch.arange(1.0, 7.0, dtype=torch.float64).reshape(1, 2, 3, 1)
    end = np.array([[0, 0], [2, 0], [0, 1], [2, 1]], dtype="float32")
    same = perspective_transform_batched(image, end, end)
    assert torch.equal(same, image)
    # half a pixel to the right: the mean of each pixel and its right neighbour; the last
    # column reads half its pixel and half the fill value 10
    half = perspective_transform_batched(image, end + [0.5, 0.0], end, fill_value=10.0)
    assert half[0, :, :, 0].tolist() == [[1.5, 2.5, 6.5], [4.5, 5.5, 8.0]]
    # nearest rounds half to even: x + 0.5 reads x + 0 at even x, x + 1 at odd x
    nearest = perspective_transform_batched(image, end + [0.5, 0.0], end, "nearest", 10.0)
    assert nearest[0, :, :, 0].tolist() == [[1.0, 3.0, 3.0], [4.0, 6.0, 6.0]]


@pytest.mark.parametrize("interpolation,fill_value,data_format,start,dtype", MODES,
                         ids=lambda v: str(v))
def test_values_equal_keras_bit_for_bit(interpolation, fill_value, data_format, start, dtype):
    images = _images(data_format, dtype)
    expected = _keras(images, STARTS[start], interpolation, fill_value, data_format)
    got = perspective_transform_batched(images, STARTS[start], CORNERS, interpolation,
                                        fill_value, data_format)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


@pytest.mark.parametrize("interpolation,fill_value,data_format,start,dtype",
                         [m for m in MODES if m[4] == torch.float64], ids=lambda v: str(v))
def test_gradients_equal_keras_autograd(interpolation, fill_value, data_format, start, dtype):
    images = _images(data_format, dtype).requires_grad_(True)
    cotangent = _images(data_format, dtype, seed=1)
    expected = _keras(images, STARTS[start], interpolation, fill_value, data_format)
    (expected_gradient,) = torch.autograd.grad((expected * cotangent).sum(), images)
    got = perspective_transform_batched(images, STARTS[start], CORNERS, interpolation,
                                        fill_value, data_format)
    (gradient,) = torch.autograd.grad((got * cotangent).sum(), images)
    # the same products, summed in another order where nodes share a pixel: at most 4 terms
    bound = 4 * torch.finfo(dtype).eps * torch.autograd.grad(
        (_keras(images, STARTS[start], interpolation, fill_value, data_format)
         * cotangent.abs()).sum(), images)[0].abs()
    assert bool(((gradient - expected_gradient).abs() <= bound).all())


def test_an_unbatched_image_and_points_per_image():
    images = _images("channels_last", torch.float64, batch=3)
    starts = np.stack([STARTS[k] for k in sorted(STARTS)])
    ends = np.stack([CORNERS] * 3)
    function = keras_internals.backend_image_function("perspective_transform")
    assert torch.equal(perspective_transform_batched(images, starts, ends),
                       function(images, starts, ends))
    assert torch.equal(perspective_transform_batched(images[0], starts[0], ends[0]),
                       function(images[0], starts[0], ends[0]))
    with pytest.raises(ValueError, match="3 sets of points for 2 images"):
        perspective_transform_batched(images[:2], starts, ends)


def test_inside_the_block_calls_without_autograd_are_batched(monkeypatch):
    images = _images("channels_last", torch.float64)
    calls = []
    batched = batched_perspective.perspective_transform_batched
    monkeypatch.setattr(batched_perspective, "perspective_transform_batched",
                        lambda *a: calls.append(1) or batched(*a))
    keras_function = keras_internals.backend_image_function("perspective_transform")
    expected = kimage.perspective_transform(images, STARTS["general"], CORNERS)
    with batched_perspective_transform(), batched_perspective_transform():  # one replacement
        assert keras_internals.backend_image_function("perspective_transform") \
            is not keras_function
        with torch.no_grad():
            got = [kimage.perspective_transform(images, STARTS["general"], CORNERS)
                   for _ in range(2)]
    assert len(calls) == 2 and all(torch.equal(g, expected) for g in got)
    assert list(batched_perspective._shortcut.agreements.values()) == [True]
    assert keras_internals.backend_image_function("perspective_transform") is keras_function


def test_autograd_calls_and_images_that_are_not_finite_are_keras_own(monkeypatch):
    monkeypatch.setattr(batched_perspective, "perspective_transform_batched",
                        lambda *a: pytest.fail("the batched path was taken"))
    images = _images("channels_last", torch.float64)
    images[1, 2, 3, 0] = np.nan
    expected = _keras(images, STARTS["scaled"])
    leaf = _images("channels_last", torch.float64).requires_grad_(True)
    with batched_perspective_transform():
        got = _keras(images, STARTS["scaled"])
        differentiated = _keras(leaf, STARTS["scaled"])
    assert torch.equal(torch.isnan(got), torch.isnan(expected))
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(expected))
    assert differentiated.requires_grad


@pytest.mark.parametrize("wrong", ["weights", "fill", "channels"])
def test_a_wrong_batching_is_caught_by_the_first_call(monkeypatch, wrong):
    """A batched computation that differs from Keras' (swapped interpolation weights, the fill
    value ignored, channels mixed up) is found by the first call: the configuration stays with
    Keras, and every call returns Keras' values."""
    batched = batched_perspective.perspective_transform_batched
    nodes = batched_perspective._nodes

    def swapped_weights(coordinate, order):
        (lower, lower_weight), (upper, upper_weight) = nodes(coordinate, order)
        return [(lower, upper_weight), (upper, lower_weight)]

    def fill_ignored(images, start, end, interpolation, fill_value, data_format):
        return batched(images, start, end, interpolation, 0.0, data_format)

    def channels_mixed(images, start, end, interpolation, fill_value, data_format):
        return batched(images, start, end, interpolation, fill_value, data_format).flip(-1)

    if wrong == "weights":
        monkeypatch.setattr(batched_perspective, "_nodes", swapped_weights)
    else:
        monkeypatch.setattr(batched_perspective, "perspective_transform_batched",
                            fill_ignored if wrong == "fill" else channels_mixed)
    images = _images("channels_last", torch.float64)
    expected = _keras(images, STARTS["shifted"], fill_value=0.5)
    with batched_perspective_transform(), torch.no_grad():
        got = [_keras(images, STARTS["shifted"], fill_value=0.5) for _ in range(3)]
    assert all(torch.equal(g, expected) for g in got)
    assert list(batched_perspective._shortcut.agreements.values()) == [False]


class _DoubledPerspective(BackwardPerspectiveTransformOp):
    """Twice the right gradient."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return 2 * super().call_on_reshaped_gradient(gradient, input, training, mask)


class _NearestForBilinear(BackwardPerspectiveTransformOp):
    """The gradient of nearest sampling where the forward interpolates bilinearly."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        self.layer.interpolation = "nearest"
        try:
            return super().call_on_reshaped_gradient(gradient, input, training, mask)
        finally:
            self.layer.interpolation = "bilinear"


@pytest.mark.parametrize("rule,verdict", [(None, "pass"), (_DoubledPerspective, "fail"),
                                          (_NearestForBilinear, "fail")])
def test_perspective_rules_are_judged_through_the_batched_path(monkeypatch, rule, verdict):
    calls = []
    batched = batched_perspective.perspective_transform_batched
    monkeypatch.setattr(batched_perspective, "perspective_transform_batched",
                        lambda *a: calls.append(1) or batched(*a))
    operation = kimage.PerspectiveTransform(interpolation="bilinear", fill_value=0.5)
    layer, shape = packed(operation, (HEIGHT, WIDTH, 2),
                          args=[{INPUT_KEY: 0}, STARTS["scaled"], CORNERS])
    result = check_layer(layer, rule, input_shape=shape, examples=5, seed=0)
    assert result.verdict == verdict, result.reason
    assert calls
