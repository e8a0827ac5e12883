"""Rules of Resizing, CenterCrop and the random augmentation layers (the identity at
inference) against torch autograd; wrong rules rejected."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from jacverify import BackwardLinearLayer, clone_to_backward, registered_rules
from tests.backward.model_reference import linear_model_vjp, model_autograd_vjp
from tests.backward.reference import assert_rule_matches_autograd, make_rule

registered_rules()

from jacverify.backward.rules.preprocessing._resize import interpolation_matrix  # noqa: E402
from jacverify.backward.rules.preprocessing.random_augmentation import (  # noqa: E402
    IDENTITY_AT_INFERENCE,
)

L = keras.layers


def _x(shape, batch=2, seed=0, low=None):
    rng = np.random.default_rng(seed)
    if low is not None:
        return rng.uniform(low, 255.0, (batch, *shape)).astype("float32")
    return rng.standard_normal((batch, *shape)).astype("float32")


RESIZE_CASES = [
    (size, target, interpolation, antialias, mode)
    for size, target, interpolation, antialias, mode in itertools.product(
        [(7, 5), (4, 4), (9, 12)], [(3, 4), (10, 6)], ["bilinear", "nearest", "bicubic"],
        [False, True], [None, "crop", "pad"],
    )
    if not (antialias and interpolation == "nearest")
]


@pytest.mark.parametrize("size,target,interpolation,antialias,mode", RESIZE_CASES, ids=str)
def test_resizing(size, target, interpolation, antialias, mode):
    layer = L.Resizing(*target, interpolation=interpolation, antialias=antialias,
                       crop_to_aspect_ratio=mode == "crop", pad_to_aspect_ratio=mode == "pad")
    x = _x((*size, 2))
    assert make_rule(layer, x).is_linear
    assert_rule_matches_autograd(layer, x, extra_axes=())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resizing_channels_first_and_dtypes(dtype):
    layer = L.Resizing(5, 3, data_format="channels_first", dtype=dtype)
    x = _x((2, 7, 4)).astype(dtype)
    tolerances = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {}
    assert_rule_matches_autograd(layer, x, **tolerances)


def test_interpolation_rows_sum_to_one():
    for interpolation, antialias in [("bilinear", False), ("bicubic", False),
                                     ("nearest", False), ("bilinear", True),
                                     ("bicubic", True)]:
        matrix = interpolation_matrix(9, 4, interpolation, antialias)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("size,target", [((7, 5), (3, 4)), ((4, 4), (6, 6)), ((6, 3), (4, 4)),
                                         ((5, 5), (5, 5))])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_center_crop(size, target, data_format):
    layer = L.CenterCrop(*target, data_format=data_format)
    shape = (*size, 3) if data_format == "channels_last" else (3, *size)
    assert_rule_matches_autograd(layer, _x(shape))


# ------------------------------------------------------------------ random augmentation
def _augmentation(cls):
    args = {"RandomBrightness": (0.3,), "RandomContrast": (0.3,), "RandomCrop": (6, 6),
            "RandomRotation": (0.2,), "RandomTranslation": (0.2, 0.2), "RandomZoom": (0.2,),
            "RandomHue": (0.3,), "RandomSaturation": (0.3,), "RandomSharpness": (0.3,),
            "RandomShear": (0.3,), "RandomColorDegeneration": (0.3,),
            "RandomPosterization": (4,), "Solarization": (0.5,), "RandomGaussianBlur": (0.5,),
            "RandomErasing": (0.5,)}
    return cls(*args.get(cls.__name__, ()))


@pytest.mark.parametrize("cls", IDENTITY_AT_INFERENCE, ids=lambda c: c.__name__)
def test_augmentation_layers_are_the_identity_at_inference(cls):
    layer = _augmentation(cls)
    x = _x((8, 8, 3), low=0.0)
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_array_equal(y, x)  # what the rule relies on
    rule = make_rule(layer, x) if cls.__name__ != "RandomCrop" else None
    if rule is not None:
        assert rule.is_linear
        g = _x((8, 8, 3), seed=3)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(rule(g)), g)


def test_backward_model_runs_augmentation_at_inference():
    """The forward layers inside the backward model run with training=False: a ReLU after a
    random flip sees the unflipped input."""
    x = keras.Input((6, 6, 2))
    h = L.RandomFlip()(x)
    h = L.RandomRotation(0.3)(h)
    model = keras.Model(x, L.Dense(3)(L.Flatten()(L.Activation("relu")(h))))
    data = _x((6, 6, 2))
    g = _x((3,), seed=2)
    backward = clone_to_backward(model)
    got = keras.ops.convert_to_numpy(backward([data, g]))

    class Inference(keras.Model):
        def call(self, inputs):
            return model(inputs, training=False)

    expected = model_autograd_vjp(Inference(), data, g)[0]
    for _ in range(3):  # deterministic: no random flip in the backward model
        np.testing.assert_allclose(keras.ops.convert_to_numpy(backward([data, g])), got)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------- the tests can fail: wrong rules
class _ResizeIgnoringAntialias(BackwardLinearLayer):
    """Differentiates the plain bilinear resize, forgetting ``antialias=True``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        h, w = self.input_dim_wo_batch[:2]
        rh = interpolation_matrix(h, self.layer.height, "bilinear")
        rw = interpolation_matrix(w, self.layer.width, "bilinear")
        return keras.ops.einsum("bhwc,hi,wj->bijc", gradient,
                                keras.ops.convert_to_tensor(rh, "float32"),
                                keras.ops.convert_to_tensor(rw, "float32"))


def test_reference_rejects_a_resize_without_antialias():
    layer = L.Resizing(3, 4, antialias=True)
    x = _x((9, 12, 2))
    assert_rule_matches_autograd(layer, x)
    with pytest.raises(AssertionError, match="Not equal"):
        assert_rule_matches_autograd(layer, x, rule_class=_ResizeIgnoringAntialias)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resizing_to_one_column_with_antialias_follows_the_forward(interpolation, data_format):
    """Torch's anti-aliased resize to a width of 1 repeats the first output row while its
    autograd interpolates each row: the rule is the derivative of the forward as computed,
    compared with float64 central differences of it (the layer is linear: exact up to
    rounding)."""
    shape = (5, 2, 2) if data_format == "channels_last" else (2, 5, 2)
    layer = L.Resizing(4, 1, interpolation=interpolation, antialias=True,
                       crop_to_aspect_ratio=True, data_format=data_format, dtype="float64")
    x_in = keras.Input(shape, dtype="float64")
    model = keras.Model(x_in, layer(x_in))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape))
    g = rng.standard_normal(tuple(model(x).shape))
    got = np.asarray(clone_to_backward(model)([x, g]))
    np.testing.assert_allclose(got, linear_model_vjp(model, x, g), rtol=1e-10, atol=1e-10)
