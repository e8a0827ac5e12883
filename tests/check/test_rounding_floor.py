"""Richardson rows stop at their rounding floor, with error bars that still hold their error."""

from __future__ import annotations

import numpy as np
import pytest

import jacverify.check.references as references
from jacverify.check.compare import C_FD
from jacverify.check.references import (
    FD_ORDER,
    FD_STEP_FACTOR,
    FDModel,
    directional_derivatives,
    fd_steps,
    stencil_weight_sums,
)

EPS64 = float(np.finfo(np.float64).eps)
RICHARDSON = references._richardson


def _weights(points: np.ndarray) -> np.ndarray:
    """Weights of the derivative at 0 from values at ``points`` (0 among them), unit step:
    exact on polynomials of degree < len(points)."""
    powers = np.vander(points, increasing=True).T
    target = np.zeros(len(points))
    target[1] = 1.0
    return np.linalg.solve(powers, target)


def test_stencil_weight_sums_are_those_of_scipys_stencils():
    # scipy's documented stencils, order 6: central x +- h / c**(0, 1, 2); one-sided x and
    # x + h / sqrt(c)**(0 .. 5). The weight of x itself does not count (phi(0) is 0 exactly).
    c = FD_STEP_FACTOR
    central_points = np.concatenate([-(c ** -np.arange(3.0)), [0.0], c ** -np.arange(3.0)])
    one_sided_points = np.concatenate([[0.0], np.sqrt(c) ** -np.arange(6.0)])
    central = np.sum(np.abs(np.delete(_weights(central_points), 3)))
    one_sided = np.sum(np.abs(_weights(one_sided_points)[1:]))
    assert FD_ORDER == 6
    assert stencil_weight_sums(FD_ORDER, FD_STEP_FACTOR) == pytest.approx(
        (central, one_sided), rel=1e-9)
    assert central == pytest.approx(6.6)  # 2 (2.8444... + 0.4444... + 0.0111...)


def _linear_model(n: int, seed: int) -> tuple[FDModel, np.ndarray]:
    kernel = np.random.default_rng(seed).standard_normal((n, n))
    bias = np.random.default_rng(seed + 1).standard_normal(n)

    def forward(rows):
        return np.asarray(rows, dtype=np.float64) @ kernel + bias

    fd = FDModel(forward=forward, dtype="float64", clone_ok=True, note="", input_shape=(n,),
                 eps=EPS64)
    return fd, kernel


def _large_example(n: int = 16, seed: int = 0):
    """A linear layer at coordinates of 3e4 (outputs ~1e5): phi's rounding over the steps
    exceeds the tolerance relative to the terms' size."""
    fd, kernel = _linear_model(n, seed)
    rng = np.random.default_rng(seed + 2)
    x = rng.uniform(-3e4, 3e4, n)
    g = rng.standard_normal(n)
    d = np.concatenate([np.eye(n), rng.standard_normal((4, n))])
    left, right, _ = fd_steps(x, d, [], fd.eps)
    return fd, x, g, d, left, right, d @ (kernel @ g)


def _iterations(monkeypatch, floor: bool) -> list:
    """Run the large example with (or without) the rounding floor; each Richardson call's
    iteration counts, and the result."""
    counts = []

    def counting(fd, rows, g, scale):
        if not floor:
            rows = references.LineRows(**{**rows.__dict__, "rounding": None})
        out = RICHARDSON(fd, rows, g, scale)
        counts.append(np.asarray(out[2]))
        return out

    monkeypatch.setattr(references, "_richardson", counting)
    fd, x, g, d, left, right, true = _large_example()
    return counts, directional_derivatives(fd, x, g, d, left, right), true


def test_a_row_at_its_rounding_floor_stops_with_a_bar_holding_its_true_error(monkeypatch):
    counts, result, true = _iterations(monkeypatch, floor=True)
    without, _, _ = _iterations(monkeypatch, floor=False)
    # Without the floor the rows iterate into larger noise; with it they stop at the first
    # comparison of two estimates, and no second call for slopes past a kink is made.
    assert max(int(np.max(c)) for c in without) > 2
    assert len(counts) == 1 and int(np.max(counts[0])) == 2
    for side in ("left", "right", "central"):
        estimate, bar = getattr(result, side), getattr(result, "err_" + side)
        assert np.all(np.isfinite(bar)) and np.all(bar > 0)
        # The bar bounds the estimate's error against the hand-computed derivative d W g.
        assert np.all(np.abs(estimate - true) <= bar), side
        # and it is a rounding bar, not a blanket one: far below the terms' size.
        assert np.all(C_FD * bar <= 1e-6 * result.abs_scale), side


def test_a_value_off_by_a_small_relative_amount_is_told_apart_at_such_a_row(monkeypatch):
    _, result, true = _iterations(monkeypatch, floor=True)
    # A value off by a millionth of the size of the terms of g^T J d (sum |g_j| |(J d)_j|).
    right_value, wrong_value = true, true + 1e-6 * result.abs_scale
    reach = C_FD * result.err_central
    assert np.all(np.abs(right_value - result.central) <= reach)
    assert np.all(np.abs(wrong_value - result.central) > reach)


def test_derivatives_at_ordinary_points_stay_those_without_the_floor(monkeypatch):
    """At unit sizes (tanh) the estimates are the same as without a rounding bound, to
    rounding, and right against the hand-computed derivative."""
    fd = FDModel(forward=np.tanh, dtype="float64", clone_ok=True, note="", input_shape=(5,),
                 eps=EPS64)
    x = np.random.default_rng(3).standard_normal(5)
    d = np.eye(5)
    left, right, _ = fd_steps(x, d, [], fd.eps)
    result = directional_derivatives(fd, x, np.ones(5), d, left, right)

    def without_floor(fd, rows, g, scale):
        return RICHARDSON(fd, references.LineRows(**{**rows.__dict__, "rounding": None}), g,
                          scale)

    monkeypatch.setattr(references, "_richardson", without_floor)
    plain = directional_derivatives(fd, x, np.ones(5), d, left, right)
    true = 1 - np.tanh(x) ** 2
    for side in ("left", "right", "central"):
        np.testing.assert_allclose(getattr(result, side), getattr(plain, side), rtol=1e-12)
        np.testing.assert_allclose(getattr(result, side), true, rtol=1e-8)
        assert np.all(np.abs(getattr(result, side) - true) <= C_FD * getattr(result,
                                                                             "err_" + side))
