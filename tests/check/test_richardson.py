"""jacverify.check.richardson against scipy.differentiate.derivative, row for row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.differentiate import derivative

from jacverify.check.richardson import derivatives, stencil_weights

ATOL, RTOL = 1e-11, 1e-10


def _functions(m: int, seed: int, kinds: int):
    """m functions of t with phi(0) = 0 (as the checker's are): smooth ones of many scales,
    then (``kinds`` > 1) a kink near 0, a jump, rounding noise, a NaN beyond a point and a
    rapid oscillation (its error grows)."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, kinds, size=m)
    a, b, c = rng.standard_normal((3, m))
    scale = 10.0 ** rng.uniform(-3, 3, size=m)

    def phi(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        t, rows = np.broadcast_arrays(np.asarray(t, dtype=np.float64), rows)
        i = np.rint(rows).astype(np.int64)
        k, ai, bi, ci, si = kind[i], a[i], b[i], c[i], scale[i]
        with np.errstate(all="ignore"):
            smooth = si * (np.expm1(ai * t) + bi * t**3 + ci * np.sin(3 * t))
            return np.select(
                [k == 0, k == 1, k == 2, k == 3, k == 4],
                [smooth,
                 smooth + si * (np.abs(t - 1e-4 * ai) - np.abs(1e-4 * ai)),
                 smooth + si * ((t > 1e-3 * bi) ^ (0 > 1e-3 * bi)),
                 smooth + si * 1e-9 * np.sin(1e7 * t),
                 si * np.log1p(1e2 * ai * t)],
                default=si * np.sin(1e4 * t * (1 + abs(ci))),
            )

    return phi, rng


def _both(phi, sides, initial, maxiter: int = 8):
    m = len(sides)
    ours = derivatives(phi, sides, initial, atol=ATOL, rtol=RTOL, order=6, maxiter=maxiter,
                       factor=2.0)
    with np.errstate(all="ignore"):
        res = derivative(phi, np.zeros(m), args=(np.arange(m, dtype=np.float64),),
                         step_direction=sides, initial_step=initial, order=6,
                         maxiter=maxiter, step_factor=2.0,
                         tolerances={"atol": ATOL, "rtol": RTOL})
    return ours, res


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_results_as_scipy_on_smooth_rows(seed: int) -> None:
    m = 400
    phi, rng = _functions(m, seed, kinds=1)
    sides = rng.integers(-1, 2, size=m)
    (df, err, nit), res = _both(phi, sides, 10.0 ** rng.uniform(-3, -1, size=m))
    np.testing.assert_array_equal(nit, res.nit)
    np.testing.assert_allclose(df, res.df, rtol=1e-10, atol=0)
    assert np.all(err <= ATOL + RTOL * np.abs(df))  # all converged
    assert len(set(nit.tolist())) >= 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_decisions_as_scipy_on_hard_rows(seed: int) -> None:
    """Kinks, jumps, noise, NaN and oscillations: where rounding decides when a row stops
    (its error hovers at the tolerance), the two may stop an iteration apart; elsewhere they
    stop together, with estimates that differ by less than their error estimates."""
    m = 600
    phi, rng = _functions(m, seed, kinds=6)
    sides = rng.integers(-1, 2, size=m)
    initial = 10.0 ** rng.uniform(-4, 0, size=m)
    initial[:3] = [0.0, -1.0, np.nan]  # no step: NaN
    (df, err, nit), res = _both(phi, sides, initial)
    assert np.all(np.isnan(df[:3])) and np.all(np.isnan(res.df[:3]))
    same = nit == res.nit
    assert np.mean(same) > 0.95
    both_nan = np.isnan(df) & np.isnan(res.df)
    bound = 10 * np.maximum(err, res.error) + 1e-12 * np.abs(res.df)
    ok = both_nan | (np.abs(df - res.df) <= bound)
    assert np.all(ok[same])
    # Every way of stopping occurred: converged early, at the iteration limit, error growth.
    assert {1, 2, 8} <= set(nit.tolist()) and len(set(nit.tolist())) >= 5


def test_each_iteration_asks_for_the_stencil_then_two_points_per_row() -> None:
    asked = []

    def phi(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        asked.append(np.shape(t))
        return np.sin(np.asarray(t) + 0.0 * rows)

    derivatives(phi, np.array([-1, 0, 1]), np.full(3, 0.5), atol=0.0, rtol=0.0, maxiter=3)
    assert asked == [(3,), (3, 6), (3, 2), (3, 2)]


def test_weights_are_exact_for_polynomials_of_the_stencils_order() -> None:
    central, one_sided = stencil_weights(3, 2.0)
    c_nodes = np.array([-0.25, -0.5, -1.0, 0.0, 1.0, 0.5, 0.25])
    o_nodes = np.concatenate([[0.0], 1.0 / np.sqrt(2.0) ** np.arange(6)])
    for p in range(7):
        expected = 1.0 if p == 1 else 0.0
        assert np.isclose(central @ c_nodes**p, expected, atol=1e-12)
        assert np.isclose(one_sided @ o_nodes**p, expected, atol=1e-12)
    assert central[3] == 0.0 and np.array_equal(central[4:], -central[:3][::-1])


def test_derivative_of_a_known_function() -> None:
    def phi(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.expm1(2.0 * np.asarray(t)) + 0.0 * rows

    df, err, _ = derivatives(phi, np.array([-1, 0, 1]), np.full(3, 0.1), atol=1e-12,
                             rtol=1e-12)
    np.testing.assert_allclose(df, 2.0, rtol=1e-9)
    assert np.all(err < 1e-8)


def test_a_row_result_does_not_depend_on_the_other_rows() -> None:
    phi, rng = _functions(300, 5, kinds=6)
    sides = rng.integers(-1, 2, size=300)
    initial = 10.0 ** rng.uniform(-4, 0, size=300)
    df, err, nit = derivatives(phi, sides, initial, atol=ATOL, rtol=RTOL)
    for i in (0, 7, 151, 299):
        one = derivatives(lambda t, r, i=i: phi(t, r + i), sides[i:i + 1], initial[i:i + 1],
                          atol=ATOL, rtol=RTOL)
        assert (one[0][0], one[1][0], one[2][0]) == (df[i], err[i], nit[i]) or (
            np.isnan(df[i]) and np.isnan(one[0][0]))


def test_direction_lines_tell_directions_apart_up_to_their_sign() -> None:
    from jacverify.check.references import direction_lines

    d = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, -2.0]])
    lines, signs = direction_lines(d)
    assert lines[0] == lines[2] and lines[1] == lines[4]
    assert len({lines[0], lines[1], lines[3], lines[5]}) == 4
    np.testing.assert_array_equal(signs, [1, 1, -1, 1, 1, -1])
    distinct, _ = direction_lines(np.eye(3))
    assert len(set(distinct.tolist())) == 3
