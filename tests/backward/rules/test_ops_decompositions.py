"""Rules of the ``keras.ops`` calls with several outputs from statistics and linear algebra
(``moments``, ``slogdet``, ``eigh``, ``svd``, ``qr``, ``lu_factor``) and of ``pinv``, in
functional models, against torch autograd of the same model in float32 and float64 (every
output used, with its own random upstream gradient), and against central differences of the
forward where torch's convention differs (``eigh`` reads one triangle)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import (
    assert_model_matches_autograd,
    functional,
    model_autograd_vjp,
)

TOLERANCES = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-9, "atol": 1e-11}}


def _matrices(shape, seed=0, dominant=0.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, *shape))
    if dominant:
        x = x + dominant * np.eye(shape[0], shape[1])
    return x


def _check(fn, shapes, xs, dtype, extra_axes=None):
    model = functional(fn, shapes, dtype=dtype)
    xs = [np.asarray(x, dtype=dtype) for x in xs]
    return assert_model_matches_autograd(model, xs if len(xs) > 1 else xs[0],
                                         extra_axes=extra_axes, **TOLERANCES[dtype])


DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axes, keepdims", [([1], False), ([1, 2], False), ([2], True)])
def test_moments(axes, keepdims, dtype):
    _check(lambda x: ops.moments(x, axes=axes, keepdims=keepdims), [(3, 4)],
           [_matrices((3, 4))], dtype)


def test_moments_single_used_output_with_jacobian_axes():
    """Only the variance is used: the mean's upstream gradient is zeros."""
    _check(lambda x: ops.moments(x, axes=[1])[1], [(3, 4)], [_matrices((3, 4))], "float32",
           extra_axes=(2,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_slogdet(dtype):
    x = _matrices((3, 3), seed=1)
    x[0] = -x[0] + 2 * np.eye(3)  # signs of both kinds
    _check(lambda a: ops.slogdet(a), [(3, 3)], [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh_of_a_symmetric_matrix(dtype):
    """In a model that symmetrizes its input, rule and torch agree (both directions of the
    pair (i, j) add up)."""
    _check(lambda a: ops.eigh(0.5 * (a + ops.swapaxes(a, -1, -2))), [(3, 3)],
           [_matrices((3, 3), seed=2)], dtype)


def _central_vjp(function, x, g, h=1e-6):
    """``g^T J`` of a function of one float64 array by central differences, entry by entry."""
    result = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        up, down = function(x + step), function(x - step)
        result[index] = sum(np.sum(gi * (u - d)) for gi, u, d in zip(g, up, down,
                                                                     strict=True)) / (2 * h)
    return result


def test_eigh_reads_the_lower_triangle_and_the_rule_differentiates_that():
    model = functional(lambda a: ops.eigh(a), [(3, 3)], dtype="float64")
    x = _matrices((3, 3), seed=3)
    upper_changed = x + np.triu(np.ones((3, 3)), 1)
    for a, b in zip(model(x), model(upper_changed), strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    rng = np.random.default_rng(4)
    g = [rng.standard_normal((3, 3)), rng.standard_normal((3, 3, 3))]
    got = ops.convert_to_numpy(clone_to_backward(model)([x, *g]))
    expected = _central_vjp(lambda a: [ops.convert_to_numpy(o) for o in model(a)], x, g)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert np.all(got[:, np.triu(np.ones((3, 3), bool), 1)] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4)])
@pytest.mark.parametrize("full_matrices", [False, True])
def test_svd(shape, full_matrices, dtype):
    _check(lambda a: ops.svd(a, full_matrices=full_matrices), [shape], [_matrices(shape, 5)],
           dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_singular_values_only(dtype):
    _check(lambda a: ops.svd(a, compute_uv=False), [(3, 2)], [_matrices((3, 2), 6)], dtype,
           extra_axes=(2,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, mode", [((3, 3), "reduced"), ((4, 2), "reduced"),
                                         ((2, 4), "reduced"), ((2, 3), "complete")])
def test_qr(shape, mode, dtype):
    _check(lambda a: ops.qr(a, mode=mode), [shape], [_matrices(shape, 7)], dtype)


def test_qr_complete_of_a_tall_matrix_is_refused():
    with pytest.raises(ValueError, match="mode='complete' of a tall matrix"):
        clone_to_backward(functional(lambda a: ops.qr(a, mode="complete")[0], [(3, 2)]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lu_factor(dtype):
    """Pivoting swaps rows (random matrices): the permutation is rebuilt from the pivots."""
    model_fn = lambda a: ops.lu_factor(a)[0]  # noqa: E731 - the pivots are integers
    _check(model_fn, [(4, 4)], [_matrices((4, 4), 8)], dtype, extra_axes=(2,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 2), (2, 3), (3, 3)])
def test_pinv(shape, dtype):
    _check(lambda a: ops.pinv(a), [shape], [_matrices(shape, 9)], dtype, extra_axes=(2,))


@pytest.mark.parametrize("shape", [(1, 3), (2, 4)])
def test_qr_of_a_wide_matrix_is_as_precise_as_autograd_in_float32(shape):
    """A small pivot of the leading square block (``R_X``): the float32 rule stays within a
    few float32 roundings of float64 autograd, as torch's own float32 autograd does (the
    square adjoint applied to ``[X | Y]`` lost up to 5e-4 relative here)."""
    rows = shape[0]
    x = _matrices(shape, seed=11)
    x[:, rows - 1, :rows] *= 1e-3  # the last pivot of X is about 1e-3
    model = functional(lambda a: ops.qr(a), [shape], dtype="float32")
    model64 = functional(lambda a: ops.qr(a), [shape], dtype="float64")
    rng = np.random.default_rng(12)
    gs = [rng.standard_normal((3, rows, rows)), rng.standard_normal((3, *shape))]
    expected = model_autograd_vjp(model64, x, gs)[0]
    got = clone_to_backward(model)([x.astype("float32"), *(g.astype("float32") for g in gs)])
    error = np.max(np.abs(np.asarray(got, dtype=np.float64) - expected))
    assert error <= 2e-6 * np.max(np.abs(expected))
