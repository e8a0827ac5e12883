"""An example's arrays come from four random streams of its seed, each made from the seed
alone: the same spec builds the same arrays in any process and in any order of building."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify.check.kinks import config_kinks
from jacverify.check.references import make_fd_model
from jacverify.check.strategies import ExampleSpec, materialize

KINKS = config_kinks(keras.layers.ReLU(max_value=6.0))


def _unit_max(v: np.ndarray) -> np.ndarray:
    return v / np.max(np.abs(v), axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_random_example_is_its_seeds_streams(dtype):
    spec = ExampleSpec("random", seed=1234, scale=3.0)
    example = materialize(spec, (2, 3), (4,), dtype, KINKS, n_random_directions=2, basis=True)
    x_stream = np.random.default_rng([1234, 0])
    x = x_stream.standard_normal(6) * 3.0
    companion = x_stream.standard_normal(6) * 3.0
    expected_x = np.stack([x, companion]).astype(dtype).reshape(2, 2, 3)
    np.testing.assert_array_equal(example.x, expected_x)
    assert example.x.dtype == np.dtype(dtype)
    g = np.random.default_rng([1234, 1]).standard_normal((2, 4)).astype(dtype)
    np.testing.assert_array_equal(example.g, g)
    directions = _unit_max(np.random.default_rng([1234, 2]).standard_normal((2, 6)))
    np.testing.assert_array_equal(example.directions, np.concatenate([np.eye(6), directions]))
    assert example.n_basis == 6 and example.marks == {} and example.kind == "random"


def test_the_numeric_kink_line_is_the_fourth_stream():
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(3, activation="relu")
    layer.build((None, 4))
    fd = make_fd_model(layer, (4,), np.random.default_rng(0))
    spec = ExampleSpec("numeric_kink", seed=8, scale=1.0)
    example = materialize(spec, (4,), (3,), "float64", KINKS, n_random_directions=2,
                          basis=False, forward64=fd.forward, fd_eps=fd.eps)
    assert example.kind == "numeric_kink"
    line = _unit_max(np.random.default_rng([8, 3]).standard_normal(4))
    np.testing.assert_array_equal(example.directions[0], line)
    second = _unit_max(np.random.default_rng([8, 2]).standard_normal((2, 4)))[1]
    np.testing.assert_array_equal(example.directions[1], second)
    # the input moved along that line onto a kink of one unit's pre-activation
    x0 = np.random.default_rng([8, 0]).standard_normal(4)
    moved = example.x[0] - x0
    s = moved[0] / line[0]
    np.testing.assert_allclose(moved, s * line, rtol=1e-12, atol=1e-15)
    pre = example.x[0] @ layer.kernel.numpy() + layer.bias.numpy()
    assert np.min(np.abs(pre)) < 1e-9


def test_marks_name_the_kink_in_the_examples_dtype():
    spec = ExampleSpec("near_kink", seed=3, scale=1.0,
                       picks=((0, 1, "ulp", 2, 1), (2, 1, "tol", 1e-5, -1)))
    for dtype in ("float32", "float64"):
        example = materialize(spec, (3,), (3,), dtype, KINKS, n_random_directions=1,
                              basis=False)
        six = np.dtype(dtype).type(6.0)
        assert example.x[0, 0] == np.nextafter(np.nextafter(six, np.inf), np.inf)
        assert example.marks[0] == f"layer.max_value + 2 ulp ({dtype})"
        assert example.x[0, 2] == np.dtype(dtype).type(6.0 - 6.0 * 1e-5)
        assert example.marks[2].startswith("layer.max_value - ")
