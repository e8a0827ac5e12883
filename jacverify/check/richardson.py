"""Adaptive Richardson extrapolation of many one-dimensional derivatives at once.

The finite differences of a check differentiate hundreds of functions ``phi_i(t)`` at
``t = 0`` in one go (every direction of every example of a group, from the left, the right
and both sides). :func:`derivatives` runs the adaptive scheme of
``scipy.differentiate.derivative`` on them, with the same stencils, steps, error estimate and
stopping rules, and gives the same results up to the rounding of each stencil's weighted sum
(where that rounding decides when a row stops, the two may stop an iteration apart;
``tests/check/test_richardson.py`` compares the two row for row):

* a central stencil of order ``2n`` on the steps ``+-h / c**i`` (``i < n``), or a one-sided
  one on ``0`` and ``h / sqrt(c)**i`` (``i < 2n``), ``c`` the step factor;
* each iteration divides ``h`` by ``c`` and evaluates two new points per row (the others
  are the previous iteration's);
* the error is the change from the previous estimate; a row stops when it is below
  ``atol + rtol |df|``, when its estimate is not finite (then NaN), when its error grew
  more than tenfold, or after ``maxiter`` iterations.

scipy's implementation serves any array library and any shape through a generic loop whose
bookkeeping (about half a millisecond per iteration, eight iterations per call) weighed more
than the arithmetic in the checks of small layers; this one is specialised to flat float64
rows and numpy. Its weighted sums run left to right in numpy, so a row's result does not depend
on the other rows (scipy's matrix-vector products round differently with the number of rows
and their place in memory, by a few units in the last place of each term).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

__all__ = ["derivatives", "stencil_weights"]


@functools.lru_cache(maxsize=8)
def stencil_weights(terms: int, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The weights of the central stencil (nodes ``-1/c**(n-1) .. -1, 0, 1 .. 1/c**(n-1)``,
    ``n = terms``) and of the right one-sided one (nodes ``0, 1, 1/d .. 1/d**(2n-1)``,
    ``d = sqrt(c)``) of ``f'(x) ~ sum w_i f(x + h node_i) / h``: the solutions of the moment
    equations ``sum w_i node_i**p = [p == 1]``."""
    def solve(nodes: np.ndarray) -> np.ndarray:
        moments = np.zeros(len(nodes))
        moments[1] = 1.0
        return np.linalg.solve(np.vander(nodes, increasing=True).T, moments)

    i = np.arange(-terms, terms + 1)
    central = solve(np.sign(i) / factor ** (np.abs(i) - 1.0))
    # The central weights are odd: made exactly so.
    central[terms] = 0.0
    central[terms + 1:] = -central[:terms][::-1]
    j = np.arange(2 * terms + 1)
    one_sided = solve(np.sign(j) / np.sqrt(factor) ** (j - 1.0))
    return central, one_sided


def _new_steps(h: np.ndarray, central: np.ndarray, first: bool, terms: int,
               factor: float) -> np.ndarray:
    """The offsets evaluated this iteration (rows: the active ones; ``h`` their step): the
    whole stencil at first, then its two new innermost points."""
    root = factor**0.5
    if first:
        hc = h[:, None] / factor ** np.arange(terms, dtype=np.float64)
        hc = np.concatenate([-hc[:, ::-1], hc], axis=1)
        hr = h[:, None] / root ** np.arange(2 * terms, dtype=np.float64)
    else:
        shrink = factor ** (terms - 1)
        hc = np.concatenate([-h[:, None], h[:, None]], axis=1) / shrink
        hr = np.concatenate([h[:, None], h[:, None] / root], axis=1) / shrink
    return np.where(central[:, None], hc, hr)


def _left_column(i: int, terms: int) -> int:
    """The column of the stored values holding ``f(-h0 / c**i)`` of a central row."""
    return terms - 1 - i if i < terms else 2 * i


def _right_column(i: int, terms: int) -> int:
    """The column of the stored values holding ``f(+h0 / c**i)`` of a central row."""
    return terms + i if i < terms else 2 * i + 1


def _central_columns(j: int, terms: int) -> tuple[list[int], list[int]]:
    """The columns of iteration ``j``'s central stencil, left of the centre and right of it.
    (The first iteration stores ``-h0/c**(n-1) .. -h0, h0 .. h0/c**(n-1)`` in columns
    ``0 .. 2n - 1``; each later one its two new points after them.)"""
    left = [_left_column(j + terms - 1 - m, terms) for m in range(terms)]
    return left, [_right_column(j + m, terms) for m in range(terms)]


def _weighted_sum(stencils: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``stencils @ weights``, summed left to right: the same bits whatever the number of
    rows and wherever the array lies in memory (a BLAS matrix-vector product's rounding
    depends on both)."""
    total = np.zeros(len(stencils))
    with np.errstate(invalid="ignore", over="ignore"):
        for k, weight in enumerate(weights.tolist()):
            total = total + stencils[:, k] * weight
    return total


def _estimates(values: np.ndarray, f0: np.ndarray, h: np.ndarray, active: np.ndarray,
               is_central: np.ndarray, j: int, terms: int, weights: tuple) -> np.ndarray:
    """Iteration ``j``'s estimates of the ``active`` rows (before a left row's sign flip),
    from the stored values, ``f0 = f(x)`` and the current steps ``h``."""
    estimate = np.empty(active.size)
    rows_c, rows_o = active[is_central], active[~is_central]
    # The centre's weight is 0; its value (f(x) at first, then the previous outermost left
    # point, as scipy's stored values line up) only carries a NaN or an inf along.
    centre = f0[rows_c] if j == 0 else values[rows_c, _left_column(j - 1, terms)]
    left, right = _central_columns(j, terms)
    stencil_c = np.concatenate([values[rows_c][:, left], centre[:, None],
                                values[rows_c][:, right]], axis=1)
    estimate[is_central] = _weighted_sum(stencil_c, weights[0]) / h[rows_c]
    stencil_o = np.concatenate([f0[rows_o, None],
                                values[rows_o, 2 * j: 2 * j + 2 * terms]], axis=1)
    estimate[~is_central] = _weighted_sum(stencil_o, weights[1]) / h[rows_o]
    return estimate


def derivatives(
    function: Callable[[np.ndarray, np.ndarray], np.ndarray],
    sides: np.ndarray,
    initial: np.ndarray,
    *,
    atol: float,
    rtol: float,
    order: int = 6,
    maxiter: int = 8,
    factor: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Derivatives at ``t = 0`` of ``m`` functions, by adaptive Richardson extrapolation.

    Args:
        function: ``function(t, rows)`` returns ``phi_rows[i](t[i, j])``, shaped like ``t``
            (``rows`` is a float column of row numbers, broadcast against ``t``).
        sides: per row, -1 (left), 0 (central) or 1 (right) differences.
        initial: per row, the first step (positive; others give NaN).
        atol, rtol: a row stops once its error is below ``atol + rtol |df|``.
        order: the stencils' order (even).
        maxiter: iterations at most.
        factor: the step's reduction per iteration.

    Returns:
        ``(df, error, nit)`` per row, as ``scipy.differentiate.derivative`` gives them.
    """
    terms = (order + 1) // 2
    sides = np.sign(np.asarray(sides)).reshape(-1)
    m = sides.size
    h = np.asarray(initial, dtype=np.float64).reshape(-1).copy()
    h[~(h > 0)] = np.nan
    if m == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    index = np.arange(m, dtype=np.float64)
    f0 = np.asarray(function(np.zeros(m), index), dtype=np.float64).reshape(m)
    central = sides == 0
    w_central, w_one_sided = stencil_weights(terms, float(factor))
    values = np.full((m, 2 * terms + 2 * max(0, maxiter - 1)), np.nan)
    df, df_out = np.full(m, np.nan), np.full(m, np.nan)
    error, error_out = np.full(m, np.nan), np.full(m, np.nan)
    nit = np.zeros(m, dtype=np.int64)
    active = np.arange(m)
    for j in range(maxiter):
        if not active.size:
            break
        offsets = _new_steps(h[active], central[active], j == 0, terms, factor)
        offsets = np.where((sides[active] < 0)[:, None], -offsets, offsets)
        columns = np.arange(2 * terms) if j == 0 else np.array([2 * j + 2 * terms - 2,
                                                                 2 * j + 2 * terms - 1])
        found = np.asarray(function(offsets, index[active][:, None]), dtype=np.float64)
        values[active[:, None], columns[None, :]] = found.reshape(offsets.shape)
        last = df[active]
        estimate = _estimates(values, f0, h, active, central[active], j, terms,
                              (w_central, w_one_sided))
        estimate = np.where(sides[active] < 0, -estimate, estimate)
        h[active] /= factor
        previous = error[active]
        change = np.abs(estimate - last)
        df[active], error[active] = estimate, change
        with np.errstate(invalid="ignore"):
            done = change < atol + rtol * np.abs(estimate)
            failed = ~np.isfinite(estimate) & ~done
            grew = (change > previous * 10) & ~(done | failed)
        estimate[failed] = np.nan
        df[active] = estimate
        stop = done | failed | grew
        stopped = active[stop]
        df_out[stopped], error_out[stopped], nit[stopped] = df[stopped], error[stopped], j + 1
        active = active[~stop]
    df_out[active], error_out[active], nit[active] = df[active], error[active], maxiter
    return df_out, error_out, nit
