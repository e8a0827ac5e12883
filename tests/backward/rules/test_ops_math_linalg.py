"""Rules of the ``keras.ops.math`` and ``keras.ops.linalg`` functions (special functions,
logsumexp, frames, distances, norms, determinants, inverses, solves, Cholesky factors) in
functional graphs, against torch autograd of the same graph in float32 and float64, with extra
Jacobian axes; refusals of the functions coupling the examples of a batch."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from jacverify import clone_to_backward
from tests.backward.model_reference import functional
from tests.backward.rules._ops_cases import check_case

RNG = np.random.default_rng(0)


def _spd(rng, shapes):
    """Symmetric positive definite matrices."""
    (shape,) = shapes
    x = rng.standard_normal(shape)
    return [np.einsum("bij,bkj->bik", x, x) + shape[-1] * np.eye(shape[-1])]


def _well_conditioned(rng, shapes):
    """A diagonally dominant matrix first, then any other operands."""
    first = rng.standard_normal(shapes[0]) + 3.0 * np.eye(shapes[0][-1])
    return [first] + [rng.standard_normal(s) for s in shapes[1:]]


def _lower_factor(rng, shapes):
    """Lower triangular matrices with a positive diagonal (Cholesky factors)."""
    (shape,) = shapes
    x = np.tril(rng.standard_normal(shape))
    return [x + (np.abs(np.diagonal(x, axis1=-2, axis2=-1))[..., None] + 1.0) * np.eye(shape[-1])]


def _upper_factor(rng, shapes):
    return [np.swapaxes(_lower_factor(rng, shapes)[0], -1, -2)]


def _inside_unit_interval(rng, shapes):
    return [rng.uniform(-0.9, 0.9, s) for s in shapes]


CASES = {
    "erf": (lambda x: ops.erf(x), [(5,)]),
    "erfc": (lambda x: ops.erfc(x), [(5,)]),
    "erfinv": (lambda x: ops.erfinv(x), [(5,)], None, _inside_unit_interval),
    "logsumexp": (lambda x: ops.logsumexp(x, axis=-1), [(3, 4)]),
    "logsumexp_axes_keepdims": (lambda x: ops.logsumexp(x, axis=(1, 2), keepdims=True),
                                [(3, 4)]),
    "extract_sequences": (lambda x: ops.extract_sequences(x, 4, 2), [(2, 9)]),
    "extract_sequences_gaps": (lambda x: ops.extract_sequences(x, 2, 3), [(10,)]),
    "cdist": (lambda x, y: ops.cdist(x, y), [(3, 2), (4, 2)]),
    "norm_vector": (lambda x: ops.norm(x, axis=-1), [(3, 4)]),
    "norm_1": (lambda x: ops.norm(x, ord=1, axis=1), [(4, 2)]),
    "norm_3": (lambda x: ops.norm(x, ord=3, axis=1), [(4, 2)]),
    "norm_inf": (lambda x: ops.norm(x, ord=float("inf"), axis=1), [(4, 2)]),
    "norm_minus_inf": (lambda x: ops.norm(x, ord=float("-inf"), axis=-1), [(4,)]),
    "norm_keepdims": (lambda x: ops.norm(x, axis=1, keepdims=True), [(4,)]),
    "norm_frobenius": (lambda x: ops.norm(x, axis=(1, 2)), [(3, 4)]),
    "norm_nuclear": (lambda x: ops.norm(x, ord="nuc", axis=(-2, -1)), [(3, 3)]),
    "det": (lambda x: ops.det(x), [(3, 3)], None, _well_conditioned),
    "logdet": (lambda x: ops.logdet(x), [(3, 3)], None, _spd),
    "inv": (lambda x: ops.inv(x), [(3, 3)], None, _well_conditioned),
    "solve": (lambda a, b: ops.solve(a, b), [(3, 3), (3, 2)], None, _well_conditioned),
    "solve_triangular_lower": (lambda a, b: ops.solve_triangular(a, b, lower=True),
                               [(3, 3), (3, 2)], None, _well_conditioned),
    "solve_triangular_upper": (lambda a, b: ops.solve_triangular(a, b, lower=False),
                               [(3, 3), (3, 2)], None, _well_conditioned),
    "cholesky": (lambda x: ops.cholesky(x), [(3, 3)], None, _spd),
    "cholesky_upper": (lambda x: ops.cholesky(x, upper=True), [(3, 3)], None, _spd),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_math_linalg_op_rule_matches_autograd(name, tmp_path):
    check_case(CASES[name], "float32",
               save_to=tmp_path / f"{name}.keras" if name in {"cdist", "solve"} else None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_math_linalg_op_rule_float64(name):
    """Keras 3.15's ``ops.norm`` computes float64 norms in float32 on torch: autograd of it,
    the reference, is float32-precise (the rule computes in float64)."""
    check_case(CASES[name], "float64", keras_float32_inside=name.startswith("norm"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("upper", [False, True])
def test_cholesky_inverse_rule(upper, dtype):
    """On the triangle it reads, the rule equals torch autograd; the other triangle does not
    change the output (checked on the forward), so its gradient is 0 (torch's formula, which
    assumes a triangular input, is not 0 there)."""
    import torch

    from tests.backward.model_reference import model_autograd_vjp

    model = functional(lambda x: ops.cholesky_inverse(x, upper=upper), [(3, 3)], dtype=dtype)
    rng = np.random.default_rng(2)
    (x,) = (_upper_factor if upper else _lower_factor)(rng, [(2, 3, 3)])
    x = x.astype(dtype)
    g = rng.standard_normal((2, 3, 3)).astype(dtype)
    got = ops.convert_to_numpy(clone_to_backward(model)([x, g]))
    (expected,) = model_autograd_vjp(model, x, [g])
    read = np.triu(np.ones((3, 3), bool)) if upper else np.tril(np.ones((3, 3), bool))
    tolerance = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(got[:, read], expected[:, read], rtol=tolerance,
                               atol=tolerance * np.abs(expected).max())
    assert np.all(got[:, ~read] == 0)
    other = x + np.where(read, 0.0, 5.0).astype(dtype)
    np.testing.assert_allclose(ops.convert_to_numpy(model(torch.tensor(other))),
                               ops.convert_to_numpy(model(torch.tensor(x))), rtol=1e-6)


@pytest.mark.parametrize("fn", [
    lambda x: ops.segment_sum(x, np.zeros(3, "int32")),
    lambda x: ops.logsumexp(x),
    lambda x: ops.norm(x),
    lambda x: ops.psnr(x, x * 0.5, 1.0),
])
def test_functions_coupling_the_batch_are_refused(fn):
    model = functional(fn, [(4,)])
    with pytest.raises(ValueError, match="couples the examples of a batch"):
        clone_to_backward(model)


def test_matrix_norm_of_other_orders_is_refused_clearly():
    model = functional(lambda x: ops.norm(x, ord=2, axis=(1, 2)), [(3, 3)])
    with pytest.raises(ValueError, match="matrix norm ord=2 .* has no rule"):
        clone_to_backward(model)


def test_cdist_rule_at_points_a_few_ulps_apart():
    """Hand computation: for one coordinate ``|x - y|`` has derivative ``sign(x - y)`` in
    ``x`` and its negative in ``y`` at any two distinct points, however close. The rule's
    earlier form ``(g / d) x - (g / d) y`` cancels to a few ulps of ``g / d`` there: the
    check below tells it apart (its error is about 6 % at these points)."""
    model = functional(lambda x, y: ops.cdist(x, y), [(1, 1), (1, 1)], dtype="float64")
    x = np.array([[[0.03502692404789498]]])
    y = np.array([[[0.03502692404789495]]])
    g = np.array([[[0.10296768001436127]]])
    got = [ops.convert_to_numpy(v) for v in clone_to_backward(model)([x, y, g])]
    expected = g * np.sign(x - y)
    np.testing.assert_allclose(got[0], expected, rtol=1e-12)
    np.testing.assert_allclose(got[1], -expected, rtol=1e-12)
    w = g / np.abs(x - y)
    cancelling = w * x - w * y
    assert not np.allclose(cancelling, expected, rtol=1e-12)


def test_cdist_rule_where_the_squared_difference_underflows():
    """``cdist`` computes ``sqrt(sum((x - y)^2))``: for ``x - y = (1e-170, 5e-171)`` the
    squares underflow to 0 in float64, the operation returns 0, and so it does at every point
    within about 1e-162 of ``x``: what it computes is constant there (finite differences of
    it with steps of 1e-173 are 0) and torch autograd is -inf (``sqrt``'s derivative at 0).
    The rule gives 0, the derivative of what the operation computes, and a subgradient of the
    distance at its kink. Just above the underflow (``x - y`` of 1e-150) it gives the unit
    vector, as autograd does."""
    import torch

    model = functional(lambda x, y: ops.cdist(x, y), [(1, 2), (1, 2)], dtype="float64")
    backward = clone_to_backward(model)
    g = np.array([[[1.0]]])
    for scale, underflows in ((1e-170, True), (1e-150, False)):
        x, y = np.zeros((1, 1, 2)), np.array([[[scale, 0.5 * scale]]])
        got = [ops.convert_to_numpy(v) for v in backward([x, y, g])]
        x_t = torch.tensor(x, requires_grad=True)
        distance = ops.cdist(x_t, torch.tensor(y))
        (autograd,) = torch.autograd.grad(distance, x_t, torch.ones_like(distance))
        step = np.array([[[scale * 1e-3, 0.0]]])
        quotient = (ops.convert_to_numpy(ops.cdist(x + step, y))
                    - ops.convert_to_numpy(ops.cdist(x - step, y))) / (2 * step[0, 0, 0])
        if underflows:
            assert float(ops.convert_to_numpy(distance)[0, 0, 0]) == 0.0
            assert not np.all(np.isfinite(autograd.numpy()))
            np.testing.assert_array_equal(quotient, 0.0)
            np.testing.assert_array_equal(got[0], 0.0)
            np.testing.assert_array_equal(got[1], 0.0)
        else:
            unit = -np.array([[[1.0, 0.5]]]) / np.sqrt(1.25)
            np.testing.assert_allclose(autograd.numpy(), unit, rtol=1e-12)
            np.testing.assert_allclose(quotient.ravel(), unit[0, 0, :1], rtol=1e-6)
            np.testing.assert_allclose(got[0], unit, rtol=1e-12)
            np.testing.assert_allclose(got[1], -unit, rtol=1e-12)
