"""Rules of ``hsplit``, ``dsplit`` (several outputs) and ``i0`` in functional models against
torch autograd in float32 and float64, and the refusals of the operations no backward rule
can express (``vsplit``, ``meshgrid``, ``lstsq``, ``map_coordinates``, complex tensors,
``elastic_transform``), each with its reason."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import assert_model_matches_autograd, functional

TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}
DTYPES = ["float32", "float64"]


def _weighted(pieces):
    """Every piece used with its own weight (a plain sum would hide a permuted gradient)."""
    return [p * (i + 1.5) for i, p in enumerate(pieces)]


def _inputs(shape, dtype, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal((3, *shape))).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sections", [2, [1, 3]])
def test_hsplit(sections, dtype):
    model = functional(lambda x: ops.concatenate(_weighted(ops.hsplit(ops.tanh(x), sections)),
                                                 axis=1), [(4, 2)], dtype=dtype)
    assert_model_matches_autograd(model, _inputs((4, 2), dtype), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dsplit(dtype):
    model = functional(lambda x: ops.concatenate(_weighted(ops.dsplit(x * x, 2)), axis=2),
                       [(2, 4)], dtype=dtype)
    assert_model_matches_autograd(model, _inputs((2, 4), dtype), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_i0(dtype):
    """Over several orders of magnitude, negative and positive (I0 is even, I1 odd)."""
    model = functional(lambda x: ops.i0(x), [(8,)], dtype=dtype)
    assert_model_matches_autograd(model, _inputs((8,), dtype, scale=4.0), extra_axes=(2,),
                                  **TOLERANCES[dtype])


def test_i0_derivative_by_central_differences():
    """An independent reference: I0' by central differences of I0 in float64."""
    model = functional(lambda x: ops.i0(x), [(5,)], dtype="float64")
    x = np.array([[-7.0, -0.5, 0.0, 1e-3, 12.0]] * 3)
    g = np.ones_like(x)
    got = ops.convert_to_numpy(clone_to_backward(model)([x, g]))
    h = 1e-6
    expected = (ops.convert_to_numpy(ops.i0(x + h)) - ops.convert_to_numpy(ops.i0(x - h))) / (2 * h)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fn, shapes, reason", [
    (lambda x: ops.concatenate(ops.vsplit(x, 1), axis=1), [(4, 2)], "batch axis"),
    (lambda x: ops.concatenate(ops.hsplit(x, 1), axis=0), [()], "batch axis"),
    (lambda x: ops.meshgrid(x, x)[0], [(3,)], "one-dimensional tensors only"),
    (lambda x: ops.image.map_coordinates(x, np.zeros((3, 2, 2)), 1), [(4, 4)],
     "coordinates address every axis"),
    (lambda x: ops.view_as_real(ops.view_as_complex(x)), [(3, 2)], "complex tensor"),
    (lambda x: ops.image.elastic_transform(x, seed=1), [(6, 6, 1)], "displacement field"),
])
def test_refused_operations_say_why(fn, shapes, reason):
    try:
        model = functional(fn, shapes)
    except Exception as error:  # noqa: BLE001 - some cannot even be traced symbolically
        pytest.skip(f"Keras cannot build this graph: {error}")
    with pytest.raises(ValueError, match=reason):
        clone_to_backward(model)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern, shape, lengths", [
    ("b h w -> b w h", (3, 4), {}),
    ("b h w c -> b (h w) c", (2, 3, 2), {}),
    ("b (h w) -> b w h", (6,), {"h": 2}),
    ("b h (w c) -> b (c h) w", (2, 6), {"c": 3}),
])
def test_rearrange(pattern, shape, lengths, dtype):
    """Keras traces rearrange only at a known batch size."""
    import keras

    x_in = keras.Input(shape, batch_size=3, dtype=dtype)
    model = keras.Model(x_in, ops.tanh(ops.rearrange(x_in, pattern, **lengths)))
    assert_model_matches_autograd(model, _inputs(shape, dtype), extra_axes=None,
                                  **TOLERANCES[dtype])


def test_rearrange_moving_the_batch_axis_is_refused():
    import keras

    x_in = keras.Input((4,), batch_size=3)
    model = keras.Model(x_in, ops.rearrange(x_in, "b h -> h b"))
    with pytest.raises(ValueError, match="batch axis"):
        clone_to_backward(model)
