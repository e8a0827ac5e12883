"""The checker's parts: kinks, strategies, references, comparisons, results."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings

from jacverify.check.compare import worst_verdict
from jacverify.check.kinks import (
    config_kinks,
    describe_coordinate,
    kink_distances,
    near_kink_mask,
)
from jacverify.check.references import (
    autograd_vjp,
    directional_derivatives,
    fd_steps,
    keras_downcasts_float64,
    kink_slope_range,
    make_fd_model,
    true_float64,
)
from jacverify.check.results import LayerCheck, jsonable
from jacverify.check.strategies import ExampleSpec, example_specs, find_numeric_kink, materialize
from tests.check.tutorial_layers import Clip

L = keras.layers


# ------------------------------------------------------------------------------ kinks
def test_config_kinks_reads_every_number_and_zero():
    kinks = config_kinks(L.ReLU(max_value=6.0, threshold=0.1, negative_slope=0.2))
    labels = {k.label: k.value for k in kinks}
    assert labels["0"] == 0.0
    assert labels["layer.max_value"] == 6.0
    assert labels["layer.threshold"] == 0.1
    assert labels["layer.negative_slope"] == 0.2
    # float32(0.1) is a different number, and a float32 layer compares with it
    assert labels["float32(layer.threshold)"] == float(np.float32(0.1))
    assert not any("name" in label or "trainable" in label for label in labels)


def test_describe_coordinate_names_the_kink():
    kinks = config_kinks(Clip(0, 2))
    assert describe_coordinate(3, 2.0, (5,), kinks, "float32") == "x[0, 3] = 2 = layer.vmax"
    above = float(np.nextafter(np.float32(2.0), np.float32(3)))
    assert describe_coordinate(1, above, (5,), kinks, "float32").endswith(
        "= layer.vmax + 1 ulp (float32)"
    )
    assert describe_coordinate(0, 1.999, (5,), kinks, "float32").endswith("= layer.vmax - 0.001")
    assert describe_coordinate(4, 0.7, (2, 3), kinks, "float32") == "x[0, 1, 1] = 0.7"


def test_kink_distances_per_side():
    kinks = config_kinks(Clip(0, 2))
    x = np.array([1.0, 2.0])
    d = np.array([[1.0, 0.0], [0.0, -1.0]])
    left, right, at = kink_distances(x, d, kinks)
    np.testing.assert_allclose(left, [1.0, np.inf])
    np.testing.assert_allclose(right, [1.0, 2.0])
    assert list(at) == [False, True]
    mask = near_kink_mask(np.array([2.0005, 1.0, -1e-4]), kinks)
    assert list(mask) == [True, False, True]


# ------------------------------------------------------------------------- strategies
@settings(max_examples=30, database=None, deadline=None)
@given(example_specs(6, 4))
def test_specs_materialize_deterministically(spec):
    kinks = config_kinks(Clip(0, 2))
    a = materialize(spec, (2, 3), (2, 3), "float32", kinks, n_random_directions=2, basis=True)
    b = materialize(spec, (2, 3), (2, 3), "float32", kinks, n_random_directions=2, basis=True)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.g, b.g)
    assert a.x.shape == (2, 2, 3) and a.x.dtype == np.float32
    assert a.directions.shape == (6 + 2, 6) and a.n_basis == 6
    assert np.allclose(np.max(np.abs(a.directions[6:]), axis=1), 1.0)
    assert ExampleSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_special_values_land_on_the_kinks():
    kinks = config_kinks(Clip(0, 2))
    vmax = next(i for i, k in enumerate(kinks) if k.label == "layer.vmax")
    exact = materialize(
        ExampleSpec("exact_kink", 1, 1.0, ((2, vmax),)), (4,), (4,), "float32", kinks,
        n_random_directions=1, basis=False,
    )
    assert exact.x[0, 2] == 2.0 and exact.marks == {2: "layer.vmax"}
    near = materialize(
        ExampleSpec("near_kink", 1, 1.0, ((1, vmax, "ulp", 2, -1),)), (4,), (4,), "float32",
        kinks, n_random_directions=1, basis=False,
    )
    assert near.x[0, 1] == np.nextafter(np.nextafter(np.float32(2), 0), 0)
    assert near.marks[1] == "layer.vmax - 2 ulp (float32)"
    tie = materialize(
        ExampleSpec("tie", 1, 1.0, ((0, "neighbours", -1),)), (3, 3), (3, 3), "float32",
        kinks, n_random_directions=1, basis=False,
    )
    assert tie.x[0, 1, 0] == tie.x[0, 0, 0] == tie.x[0, 0, 1]


def test_numeric_kink_is_found_on_a_line():
    layer = L.Dense(3, activation="relu")
    layer.build((None, 4))
    fd = make_fd_model(layer, (4,), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x0, line = rng.standard_normal(4), rng.standard_normal(4)
    found = find_numeric_kink(fd.forward, x0, line, 3.0, fd.eps)
    assert found is not None
    s, unit = found
    pre = (x0 + s * line) @ layer.kernel.numpy() + layer.bias.numpy()
    assert abs(pre[unit]) < 1e-9


def test_find_numeric_kink_picks_the_largest_isolated_spike_first_met():
    """Against a plain scan of every centre point: several relu units with kinks at random
    places along the line (some coinciding, so that spikes tie), and a smooth output."""
    from jacverify.check.strategies import LINE_POINTS

    def scan(y: np.ndarray, noise: float) -> tuple[int, int] | None:
        d2 = np.abs(y[2:] - 2 * y[1:-1] + y[:-2])
        best = None
        for c in range(3, LINE_POINTS - 3):
            for j in range(y.shape[1]):
                a = d2[c - 1, j]
                if a > 8 * max(d2[c - 3, j], d2[c + 1, j]) and a > noise and (
                    best is None or a > best[0]
                ):
                    best = (a, c, j)
        return None if best is None else best[1:]

    rng = np.random.default_rng(3)
    seen = 0
    for trial in range(40):
        s = np.linspace(-3.0, 3.0, LINE_POINTS)
        units = int(rng.integers(1, 5))
        where = rng.choice(s[4:-4], size=units) + rng.uniform(0, 0.04, size=units) * (trial % 2)
        slopes = rng.uniform(0.5, 2.0, size=units) * (1 + (trial % 3 == 0))
        ys = np.maximum(0.0, (s[:, None] - where[None, :]) * slopes[None, :])
        ys = np.concatenate([ys, np.sin(s)[:, None]], axis=1)

        def forward(rows: np.ndarray, ys: np.ndarray = ys) -> np.ndarray:
            assert len(rows) == LINE_POINTS
            return ys

        found = find_numeric_kink(forward, np.zeros(1), np.ones(1), 3.0, 2.2e-16)
        expected = scan(ys, 64 * 2.2e-16 * (np.max(np.abs(ys)) + 1.0))
        if expected is None:
            assert found is None
            continue
        c, j = expected
        h = s[1] - s[0]
        m_left = (ys[c - 1, j] - ys[c - 2, j]) / h
        m_right = (ys[c + 2, j] - ys[c + 1, j]) / h
        s_kink = (ys[c + 1, j] - ys[c - 1, j] + m_left * s[c - 1] - m_right * s[c + 1]) / (
            m_left - m_right)
        assert found == (s_kink, j)
        seen += 1
    assert seen >= 20


# ------------------------------------------------------------------------- references
def test_keras_downcasts_float64_and_the_patch_undoes_it():
    assert keras_downcasts_float64()  # Keras 3 on torch: float64 matmul runs in float32
    with true_float64() as ok:
        assert ok
        a = keras.ops.convert_to_tensor(np.full((1, 2), 1 + 2**-40))
        assert keras.ops.matmul(a, keras.ops.transpose(a)).dtype == keras.ops.convert_to_tensor(
            np.zeros(1)
        ).dtype
    assert keras_downcasts_float64()


def test_float64_clone_really_computes_in_float64():
    layer = L.Dense(4, activation="tanh")
    layer.build((None, 50))
    fd = make_fd_model(layer, (50,), np.random.default_rng(0))
    assert fd.clone_ok and fd.dtype == "float64" and fd.eps < 1e-15, fd.note
    x = np.random.default_rng(1).standard_normal(50)
    exact = np.tanh(x @ layer.kernel.numpy().astype(np.float64) + layer.bias.numpy())
    np.testing.assert_allclose(fd.forward(x[None])[0], exact, rtol=1e-13, atol=1e-14)


def test_layer_whose_clone_differs_falls_back_and_says_why():
    class Scale(L.Layer):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

    layer = Scale()
    layer.factor = 3.0  # state that get_config() does not carry
    fd = make_fd_model(layer, (2,), np.random.default_rng(0))
    assert not fd.clone_ok and fd.dtype == "float32"
    assert "differs from the layer's" in fd.note


def _directional(layer, x, d, g=None):
    shape = x.shape
    fd = make_fd_model(layer, shape, np.random.default_rng(0))
    x = x.reshape(-1).astype(np.float64)
    d = np.asarray(d, dtype=np.float64).reshape(1, -1)
    g = np.ones(x.size) if g is None else g
    kinks = config_kinks(layer)
    left, right, _ = fd_steps(x, d, kinks, fd.eps)
    return directional_derivatives(fd, x, g, d, left, right), fd


def test_one_sided_derivatives_reveal_the_relu_kink():
    dd, _ = _directional(L.ReLU(), np.array([0.0, 1.0]), [1.0, 0.0])
    assert dd.left[0] == pytest.approx(0, abs=1e-12)
    assert dd.right[0] == pytest.approx(1, abs=1e-12)
    assert dd.central[0] == pytest.approx(0.5)  # the central estimate hides the kink
    assert not dd.jump_left[0] and not dd.jump_right[0]


def test_jump_is_recognised():
    dd, _ = _directional(L.ReLU(threshold=1.0), np.array([1.0, 0.5]), [1.0, 0.0])
    assert dd.jump_right[0] and not dd.jump_left[0]
    assert dd.jump_size[0] == pytest.approx(1.0, rel=1e-6)


def test_compound_kink_range_contains_every_chain_rule_choice():
    # At x = 0 every unit of a bias-free ReLU Dense layer sits on its kink.
    layer = L.Dense(3, activation="relu", use_bias=False)
    layer.build((None, 4))
    fd = make_fd_model(layer, (4,), np.random.default_rng(0))
    g = np.array([0.5, -1.0, 2.0])
    d = np.array([1.0, -0.5, 0.25, 0.8])
    c = g * (d @ layer.kernel.numpy())  # each unit's contribution when active
    low, high = kink_slope_range(fd, np.zeros(4), g, d, 0.01, np.random.default_rng(0))
    assert low == pytest.approx(np.sum(np.minimum(c, 0)), abs=1e-6)
    assert high == pytest.approx(np.sum(np.maximum(c, 0)), abs=1e-6)


def test_autograd_vjp_matches_the_transpose():
    layer = L.Dense(3)
    layer.build((None, 4))
    x = np.ones((1, 4), dtype="float32")
    g = np.array([[1.0, 2.0, 3.0]], dtype="float32")
    np.testing.assert_allclose(autograd_vjp(layer, x, g), g @ layer.kernel.numpy().T, rtol=1e-6)


# --------------------------------------------------------------------- verdicts, results
def test_worst_verdict_order():
    assert worst_verdict(["pass", "boundary", "fail"]) == "fail"
    assert worst_verdict(["pass", "inconclusive"]) == "inconclusive"
    assert worst_verdict(["error", "fail"]) == "error"
    assert worst_verdict(["unjudged"]) == "pass"
    assert worst_verdict(["skipped"]) == "skipped"


def test_jsonable_handles_numpy_and_non_finite():
    data = jsonable({"a": np.float32(1.5), "b": np.array([1.0, np.nan, np.inf]), "c": (1, 2)})
    assert data == {"a": 1.5, "b": [1.0, None, None], "c": [1, 2]}
    check = LayerCheck("pass", "fine.", "l", "Clip", "R", max_abs_error=math.inf)
    assert json.loads(json.dumps(check.to_dict()))["max_abs_error"] is None


def test_kink_distances_against_a_scan_of_each_coordinate_and_kink():
    from jacverify.check.kinks import KinkValue, kink_distances

    rng = np.random.default_rng(7)
    x = np.array([0.3, -0.7, 0.5, 1.2, -0.2, 0.9])  # x[2] on a kink
    d = rng.standard_normal((5, 6)) * (rng.random((5, 6)) > 0.3)
    d[0, 2], d[1, 2] = 0.0, 1.0
    kinks = [KinkValue(v, str(v)) for v in (0.0, 0.5, -1.0)]
    below = np.full(5, 1e-9)
    left, right, at_kink = kink_distances(x, d, kinks, ignore_below=below)
    for k in range(5):
        ts = [(kink.value - x[i]) / d[k, i] for kink in kinks for i in range(6) if d[k, i] != 0]
        assert right[k] == min([t for t in ts if t > 1e-9], default=np.inf)
        assert left[k] == min([-t for t in ts if t < -1e-9], default=np.inf)
        assert at_kink[k] == any(abs(t) <= 1e-9 for t in ts)
    assert at_kink.any() and not at_kink.all()


def test_direction_lines_tell_directions_apart_up_to_their_sign() -> None:
    from jacverify.check.references import direction_lines

    d = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, -2.0]])
    lines, signs = direction_lines(d)
    assert lines[0] == lines[2] and lines[1] == lines[4]
    assert len({lines[0], lines[1], lines[3], lines[5]}) == 4
    np.testing.assert_array_equal(signs, [1, 1, -1, 1, 1, -1])
    distinct, _ = direction_lines(np.eye(3))
    assert len(set(distinct.tolist())) == 3


def test_jsonable_keeps_plain_values_and_converts_their_subclasses():
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Colour(str, enum.Enum):
        RED = "red"

    data = jsonable({"s": "a", "i": 7, "b": True, "n": None, "f": 0.25, "nan": float("nan"),
                     "inf": -float("inf"), "level": Level.HIGH, "colour": Colour.RED,
                     "np_bool": np.bool_(False), "np_int": np.int64(5), 3: (1.5,)})
    assert data == {"s": "a", "i": 7, "b": True, "n": None, "f": 0.25, "nan": None,
                    "inf": None, "level": 3, "colour": "red", "np_bool": False, "np_int": 5,
                    "3": [1.5]}
    assert [type(data[k]) for k in ("i", "b", "level", "colour", "np_int")] == [
        int, bool, int, str, int]
