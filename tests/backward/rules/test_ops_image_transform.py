"""Rules of ``keras.ops.image.affine_transform`` and ``perspective_transform`` in functional
models, against torch autograd of the same model in float32 and float64 (both data formats,
both interpolations, every fill mode), and the refusals of transforms that are tensors."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional

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
    model = functional(lambda x: ops.image.perspective_transform(
        x, start, end, interpolation=interpolation, fill_value=0.25,
        data_format=data_format), [shape], dtype=dtype)
    assert_model_matches_autograd(model, _images(shape, 4, dtype), extra_axes=(2,),
                                  **TOLERANCES[dtype])
