"""Rules of the reshaping layers against torch autograd, and deliberately wrong rules that the
reference must reject."""

from __future__ import annotations

import os
import re
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from jacverify import BackwardLinearLayer, clone_to_backward, get_backward_rule
from tests.backward.reference import (
    assert_rule_matches_autograd,
    make_rule,
    model_autograd_vjp,
    rule_vjp,
)

L = keras.layers
FLOAT64 = {"rtol": 1e-10, "atol": 1e-12}
ALL_LAYERS = [
    L.Flatten, L.Reshape, L.Permute, L.RepeatVector, L.Cropping1D, L.Cropping2D, L.Cropping3D,
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.UpSampling1D, L.UpSampling2D,
    L.UpSampling3D,
]


def _x(*shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_reshaping_rules_are_registered_natively_and_linear():
    for layer_class in ALL_LAYERS:
        rule_class = get_backward_rule(layer_class)
        assert rule_class.__name__ == f"Backward{re.sub(r'[123]D$', '', layer_class.__name__)}"
        assert rule_class.__module__.startswith("jacverify.backward.rules.reshaping.")
        assert rule_class.is_linear


# (layer factory, input shape): every option that changes the arithmetic.
CASES = {
    "flatten-last": (lambda: L.Flatten(), (2, 3, 4, 5)),
    "flatten-first-4d": (lambda: L.Flatten(data_format="channels_first"), (2, 3, 4, 5)),
    "flatten-first-3d": (lambda: L.Flatten(data_format="channels_first"), (3, 4, 5)),
    "flatten-first-5d": (lambda: L.Flatten(data_format="channels_first"), (2, 2, 3, 2, 3)),
    "flatten-first-2d": (lambda: L.Flatten(data_format="channels_first"), (2, 6)),
    "reshape": (lambda: L.Reshape((6, 5)), (2, 3, 10)),
    "reshape-infer": (lambda: L.Reshape((-1, 3)), (2, 3, 4)),
    "reshape-rank-up": (lambda: L.Reshape((2, 3, 2)), (2, 12)),
    "permute-2": (lambda: L.Permute((2, 1)), (2, 3, 4)),
    "permute-312": (lambda: L.Permute((3, 1, 2)), (2, 3, 4, 5)),
    "permute-231": (lambda: L.Permute((2, 3, 1)), (2, 3, 4, 5)),
    "permute-identity": (lambda: L.Permute((1, 2)), (2, 3, 4)),
    "repeat-vector": (lambda: L.RepeatVector(4), (3, 5)),
    "cropping1d": (lambda: L.Cropping1D((1, 2)), (2, 7, 3)),
    "cropping1d-right-0": (lambda: L.Cropping1D((2, 0)), (2, 7, 3)),
    "cropping2d-last": (lambda: L.Cropping2D(((1, 0), (2, 1))), (2, 5, 6, 3)),
    "cropping2d-first": (lambda: L.Cropping2D(((1, 2), (0, 1)), data_format="channels_first"),
                         (2, 3, 5, 6)),
    "cropping2d-int": (lambda: L.Cropping2D(1), (2, 4, 5, 2)),
    "cropping3d-last": (lambda: L.Cropping3D(((1, 0), (2, 1), (0, 1))), (2, 4, 5, 6, 3)),
    "cropping3d-first": (lambda: L.Cropping3D(1, data_format="channels_first"), (2, 3, 4, 5, 6)),
    "zeropad1d": (lambda: L.ZeroPadding1D((1, 2)), (2, 6, 3)),
    "zeropad1d-first": (lambda: L.ZeroPadding1D((0, 2), data_format="channels_first"),
                        (2, 3, 6)),
    "zeropad2d-last": (lambda: L.ZeroPadding2D(((1, 0), (2, 1))), (2, 5, 6, 3)),
    "zeropad2d-first": (lambda: L.ZeroPadding2D(((0, 3), (2, 1)), data_format="channels_first"),
                        (2, 3, 5, 6)),
    "zeropad3d-last": (lambda: L.ZeroPadding3D(((1, 0), (2, 1), (0, 1))), (2, 4, 3, 2, 3)),
    "zeropad3d-first": (lambda: L.ZeroPadding3D(1, data_format="channels_first"),
                        (2, 3, 2, 3, 4)),
    "upsampling1d": (lambda: L.UpSampling1D(3), (2, 4, 3)),
    "upsampling1d-1": (lambda: L.UpSampling1D(1), (2, 4, 3)),
    "upsampling3d-last": (lambda: L.UpSampling3D((1, 2, 3)), (2, 3, 4, 2, 3)),
    "upsampling3d-first": (lambda: L.UpSampling3D((2, 1, 3), data_format="channels_first"),
                           (2, 3, 3, 4, 2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reshaping_rules_match_autograd(name):
    factory, shape = CASES[name]
    assert_rule_matches_autograd(factory(), _x(*shape), extra_axes=(2,))


@pytest.mark.parametrize("name", ["flatten-first-4d", "permute-312", "cropping3d-last",
                                  "zeropad2d-first", "upsampling3d-first", "repeat-vector"])
def test_reshaping_rules_float64_batch_one(name):
    factory, shape = CASES[name]
    layer = factory()
    layer = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
    assert_rule_matches_autograd(layer, _x(1, *shape[1:], dtype="float64"), **FLOAT64)


# UpSampling2D: nearest repeats; bilinear and bicubic call torch's interpolate
# (align_corners=False), whose border clamping the rule must reproduce: sizes 1 and 2 put every
# output next to a border, and factors 1..4 cover both the even and odd phase layouts.
UPSAMPLING_2D = [
    (interpolation, data_format, size, hw)
    for interpolation in ("nearest", "bilinear", "bicubic")
    for data_format in ("channels_last", "channels_first")
    for size, hw in (((2, 2), (5, 4)), ((3, 1), (1, 2)), ((1, 4), (2, 3)), ((4, 3), (3, 1)))
]


@pytest.mark.parametrize("interpolation,data_format,size,hw", UPSAMPLING_2D)
def test_upsampling2d_matches_autograd(interpolation, data_format, size, hw):
    shape = (2, *hw, 3) if data_format == "channels_last" else (2, 3, *hw)
    layer = L.UpSampling2D(size, data_format=data_format, interpolation=interpolation)
    assert_rule_matches_autograd(layer, _x(*shape), extra_axes=(2,))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
def test_upsampling2d_float64(interpolation):
    layer = L.UpSampling2D((3, 2), interpolation=interpolation, dtype="float64")
    assert_rule_matches_autograd(layer, _x(2, 4, 5, 2, dtype="float64"), **FLOAT64)


def test_upsampling2d_bilinear_by_hand():
    # n = 2, size 2: torch samples x at 0 (clamped), 0.25, 0.75 and 1 (clamped), so
    # y = [x0, .75 x0 + .25 x1, .25 x0 + .75 x1, x1] and g = 1 gives [2, 2]; g = e_1 gives
    # [.75, .25].
    layer = L.UpSampling2D((2, 1), interpolation="bilinear")
    x = _x(1, 2, 1, 1)
    rule = make_rule(layer, x)
    np.testing.assert_allclose(rule_vjp(rule, x, np.ones((1, 4, 1, 1), "float32"))[0].ravel(),
                               [2, 2], rtol=1e-6)
    g = np.zeros((1, 4, 1, 1), "float32")
    g[0, 1] = 1
    np.testing.assert_allclose(rule_vjp(rule, x, g)[0].ravel(), [0.75, 0.25], rtol=1e-6)


def test_upsampling2d_rejects_unsupported_interpolations():
    layer = L.UpSampling2D(2, interpolation="lanczos3")
    with pytest.raises(NotImplementedError, match="lanczos3"):
        get_backward_rule(L.UpSampling2D)(layer, input_dim_wo_batch=[4, 4, 3],
                                          output_dim_wo_batch=[8, 8, 3])


# -------------------------------------------------------- wrong rules must be rejected
class _PermuteNotInverted(BackwardLinearLayer):
    """Wrong: transposes by the forward permutation instead of its inverse (right only for
    permutations that are their own inverse)."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.transpose(gradient, (0, *self.layer.dims))


class _FlattenIgnoringDataFormat(BackwardLinearLayer):
    """Wrong for channels_first: a plain reshape."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.reshape(gradient, (-1, *self.input_dim_wo_batch))


class _CroppingSwapped(BackwardLinearLayer):
    """Wrong: pads the cropped amounts on the opposite sides."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        before, after = self.layer.cropping
        return ops.pad(gradient, [(0, 0), (after, before), (0, 0)])


class _BilinearAsNearest(BackwardLinearLayer):
    """Wrong for bilinear interpolation: the nearest-neighbour block sums."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        (fh, fw), (h, w, c) = self.layer.size, self.input_dim_wo_batch
        return ops.sum(ops.reshape(gradient, (-1, h, fh, w, fw, c)), axis=(2, 4))


def test_reference_rejects_wrong_reshaping_rules():
    # Each bug is invisible where it does not matter and caught where it does.
    assert_rule_matches_autograd(L.Permute((2, 1)), _x(2, 3, 4), rule_class=_PermuteNotInverted)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.Permute((2, 3, 1)), _x(2, 3, 4, 5),
                                     rule_class=_PermuteNotInverted)
    assert_rule_matches_autograd(L.Flatten(), _x(2, 3, 4), rule_class=_FlattenIgnoringDataFormat)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.Flatten(data_format="channels_first"), _x(2, 3, 4),
                                     rule_class=_FlattenIgnoringDataFormat)
    assert_rule_matches_autograd(L.Cropping1D((1, 1)), _x(2, 6, 3), rule_class=_CroppingSwapped)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.Cropping1D((1, 2)), _x(2, 6, 3),
                                     rule_class=_CroppingSwapped)
    assert_rule_matches_autograd(L.UpSampling2D(2), _x(2, 3, 4, 2), rule_class=_BilinearAsNearest)
    with pytest.raises(AssertionError):
        assert_rule_matches_autograd(L.UpSampling2D(2, interpolation="bilinear"), _x(2, 3, 4, 2),
                                     rule_class=_BilinearAsNearest)


# ---------------------------------------------------------------- in a model, saved, loaded
def test_reshaping_rules_in_a_saved_backward_model():
    inputs = keras.Input((6, 5, 3))
    x = L.ZeroPadding2D(((1, 0), (0, 2)))(inputs)
    x = L.UpSampling2D((2, 2), interpolation="bilinear")(x)
    x = L.Cropping2D(((1, 1), (0, 1)))(x)
    x = L.Permute((2, 1, 3))(x)
    x = L.UpSampling2D((1, 2), interpolation="bicubic", data_format="channels_first")(x)
    x = L.Flatten(data_format="channels_first")(x)
    x = L.Reshape((-1, 4))(x)
    x = L.Cropping1D((2, 3))(x)
    x = L.UpSampling1D(2)(x)
    x = L.Flatten()(x)
    model = keras.Model(inputs, x)
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((2, 6, 5, 3)).astype("float32")
    g = rng.standard_normal((2, *model.output_shape[1:])).astype("float32")
    expected = model_autograd_vjp(model, xv, g)[0]
    np.testing.assert_allclose(ops.convert_to_numpy(backward([xv, g])), expected,
                               rtol=1e-5, atol=1e-5)
    path = os.path.join(tempfile.mkdtemp(), "reshaping_backward.keras")
    backward.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded([xv, g])), expected,
                               rtol=1e-5, atol=1e-5)


def test_reshaping_rules_with_unknown_spatial_sizes():
    inputs = keras.Input((None, 3, None))
    x = L.ZeroPadding2D(((1, 0), (0, 2)), data_format="channels_first")(inputs)
    x = L.UpSampling2D((2, 3), interpolation="bicubic", data_format="channels_first")(x)
    x = L.Cropping2D(((1, 1), (0, 1)), data_format="channels_first")(x)
    x = L.UpSampling2D((1, 2), interpolation="bilinear", data_format="channels_first")(x)
    x = L.UpSampling2D(2, data_format="channels_first")(x)
    model = keras.Model(inputs, x)
    backward = clone_to_backward(model)
    rng = np.random.default_rng(0)
    for shape in [(2, 4, 3, 5), (1, 6, 3, 2)]:
        xv = rng.standard_normal(shape).astype("float32")
        g = rng.standard_normal(tuple(model(xv).shape)).astype("float32")
        np.testing.assert_allclose(ops.convert_to_numpy(backward([xv, g])),
                                   model_autograd_vjp(model, xv, g)[0], rtol=1e-5, atol=1e-5)
