"""Rules of ``keras.ops.image.affine_transform`` and ``perspective_transform`` in functional
models, against torch autograd of the same model in float32 and float64 (both data formats,
both interpolations, every fill mode), and the refusals of transforms that are tensors."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional


def _precision(dtype):
    """Keras 3.15 solves the homography and builds the resampling matrices of float64 calls
    in float32 (its type promotion); backward models replay the forward under
    ``float64_precision``, where they stay float64: the float64 reference runs there too."""
    from jacverify.backward.precision import float64_precision

    return float64_precision() if dtype == "float64" else contextlib.nullcontext()


TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}
BATCH = 3


def _transforms(seed):
    """Rotations, shears, scales and shifts (and small projective entries), one per example,
    chosen off integer coordinates."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), (BATCH, 1))
    t += rng.uniform(-0.3, 0.3, (BATCH, 8)) * np.array([1, 1, 4, 1, 1, 4, 0.1, 0.1])
    return t


def _images(shape, seed, dtype):
    return np.random.default_rng(seed).standard_normal((BATCH, *shape)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "wrap", "mirror", "reflect"])
def test_affine_transform(fill_mode, interpolation, dtype):
    transform = _transforms(0).astype(dtype)
    model = functional(
        lambda x: ops.tanh(ops.image.affine_transform(
            x * x, transform, interpolation=interpolation, fill_mode=fill_mode,
            fill_value=0.5)),
        [(5, 6, 2)], dtype=dtype)
    assert_model_matches_autograd(model, _images((5, 6, 2), 1, dtype), extra_axes=(2,),
                                  **TOLERANCES[dtype])


def test_affine_transform_channels_first():
    transform = _transforms(2).astype("float32")
    model = functional(lambda x: ops.image.affine_transform(
        x, transform, data_format="channels_first"), [(2, 5, 4)])
    assert_model_matches_autograd(model, _images((2, 5, 4), 3, "float32"))


def test_affine_transform_of_a_tensor_transform_is_refused():
    model = functional(lambda x, t: ops.image.affine_transform(x, t), [(4, 4, 1), (8,)])
    with pytest.raises(ValueError, match="swaps entries of that tensor in place"):
        clone_to_backward(model)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_perspective_transform(data_format, interpolation, dtype):
    start = np.array([[0.0, 0.0], [5.3, 0.4], [0.2, 4.1], [5.0, 4.6]], dtype=dtype)
    end = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 4.0], [5.0, 4.0]], dtype=dtype)
    shape = (5, 6, 2) if data_format == "channels_last" else (2, 5, 6)
    model = functional(lambda x: ops.tanh(ops.image.perspective_transform(
        x, start, end, interpolation=interpolation, fill_value=0.25,
        data_format=data_format)), [shape], dtype=dtype)
    with _precision(dtype):
        assert_model_matches_autograd(model, _images(shape, 4, dtype), extra_axes=(2,),
                                      **TOLERANCES[dtype])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_ssim(data_format):
    """Both images tensors of the model, against torch autograd of the model (float32)."""
    shape = (7, 8, 2) if data_format == "channels_last" else (2, 7, 8)
    model = functional(lambda a, b: ops.image.ssim(a, b, max_val=2.0, filter_size=3,
                                                   data_format=data_format), [shape, shape])
    xs = [_images(shape, 5, "float32"), _images(shape, 6, "float32")]
    assert_model_matches_autograd(model, xs, extra_axes=(2,), **TOLERANCES["float32"])


def _ssim_float64(a, b, size, sigma, max_val):
    """SSIM computed in float64 with torch (Keras 3.15 computes it in float32 even for float64
    images, so autograd of Keras' own call is only float32-precise)."""
    import torch

    x = np.arange(size) - (size - 1) / 2.0
    gauss = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    kernel = torch.tensor(np.outer(gauss, gauss) / gauss.sum() ** 2)[None, None]
    planes = [t.permute(0, 3, 1, 2).reshape(-1, 1, *t.shape[1:3]) for t in (a, b)]

    def conv(t):
        return torch.nn.functional.conv2d(t, kernel)

    m1, m2 = conv(planes[0]), conv(planes[1])
    s1 = conv(planes[0] ** 2) - m1 ** 2
    s2 = conv(planes[1] ** 2) - m2 ** 2
    s12 = conv(planes[0] * planes[1]) - m1 * m2
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    ssim_map = (2 * m1 * m2 + c1) * (2 * s12 + c2) / ((m1 ** 2 + m2 ** 2 + c1) * (s1 + s2 + c2))
    return ssim_map.reshape(a.shape[0], -1).mean(-1)


def test_ssim_float64_against_a_float64_reference():
    import torch

    model = functional(lambda a, b: ops.image.ssim(a, b, max_val=2.0, filter_size=3),
                       [(7, 8, 2), (7, 8, 2)], dtype="float64")
    xs = [_images((7, 8, 2), 5, "float64"), _images((7, 8, 2), 6, "float64")]
    g = np.random.default_rng(8).standard_normal(3)
    got = [ops.convert_to_numpy(r) for r in clone_to_backward(model)([*xs, g])]
    leaves = [torch.tensor(x, requires_grad=True) for x in xs]
    expected = torch.autograd.grad(_ssim_float64(*leaves, 3, 1.5, 2.0), leaves, torch.tensor(g))
    for a, e in zip(got, expected, strict=True):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, e.numpy(), rtol=1e-9, atol=1e-12)


def test_ssim_of_an_image_with_itself():
    model = functional(lambda a: ops.image.ssim(a, ops.tanh(a), filter_size=3), [(6, 6, 1)])
    assert_model_matches_autograd(model, _images((6, 6, 1), 7, "float32"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method, antialias", [("linear", True), ("linear", False),
                                               ("cubic", True), ("lanczos3", True)])
def test_scale_and_translate(method, antialias, dtype):
    """Down- and up-sampling with shifts (output_shape names the batch size: a fixed batch)."""
    import keras

    x_in = keras.Input((5, 6, 2), batch_size=BATCH, dtype=dtype)
    out = ops.image.scale_and_translate(
        x_in * x_in, (BATCH, 3, 9, 2), np.array([0.6, 1.5], dtype), np.array([0.25, -1.0], dtype),
        spatial_dims=(1, 2), method=method, antialias=antialias)
    model = keras.Model(x_in, ops.tanh(out))
    with _precision(dtype):
        assert_model_matches_autograd(model, _images((5, 6, 2), 9, dtype), extra_axes=None,
                                      **TOLERANCES[dtype])


def test_perspective_transform_of_tensor_points_is_refused():
    """Points that are tensors of the model (the model would differentiate through them):
    one clear error naming the operation and the argument."""
    model = functional(lambda x, start, end: ops.image.perspective_transform(x, start, end),
                       [(4, 4, 1), (4, 2), (4, 2)])
    with pytest.raises(ValueError, match="PerspectiveTransform '.*': its start or end points "
                                         "are tensors of the model"):
        clone_to_backward(model)
