"""The autograd reference of operations whose torch derivative is wrong: ldexp (negative
exponents), nextafter (ties), det (singular matrices).

Each test first shows torch's derivative is wrong there (against a hand computation), then
that the equivalent forward the configuration names is the operation's value and has the
right derivative, and that check_layer passes the native rule and catches a wrong one, among
them a rule that copies torch's wrong derivative (which autograd alone would have confirmed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops

from jacverify import check_layer, registered_rules
from jacverify.backward.graph import INPUT_KEY
from jacverify.check.autograd_forward import (
    AutogradForward,
    det_forward,
    ldexp_forward,
    nextafter_forward,
)
from jacverify.check.layer_configs._common import packed
from jacverify.check.references import ReferenceUnavailable, autograd_vjp
from jacverify.keras_internals import ops_linalg as klinalg
from jacverify.keras_internals import ops_numpy as knp

registered_rules()

from jacverify.backward.rules.ops.exponential import BackwardLdexpOp  # noqa: E402
from jacverify.backward.rules.ops.matrix import BackwardDetOp  # noqa: E402
from jacverify.backward.rules.ops.piecewise import BackwardNextafterOp  # noqa: E402

X0 = {INPUT_KEY: 0}
EXPONENTS = np.array([-1, -2, 3], dtype="int32")


def _grad(function, *tensors):
    leaves = [torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in tensors]
    out = function(*leaves)
    return [g.numpy() for g in torch.autograd.grad(out.sum(), leaves)]


# ---------------------------------------------------------------- torch is wrong there
def test_torch_ldexp_derivative_is_zero_for_negative_exponents():
    x = torch.tensor([1.5, 1.5], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(torch.ldexp(x, torch.tensor([-1, 2])).sum(), x)
    assert grad.tolist() == [0.0, 4.0]  # the derivative is [0.5, 4]


def test_torch_nextafter_derivative_is_zero_at_ties():
    (g1, g2) = _grad(torch.nextafter, [0.5, 0.5], [0.5, 0.7])
    assert g1.tolist() == [0.0, 1.0]  # d/dx1 is 1 on both sides of the tie
    assert g2.tolist() == [0.0, 0.0]


def test_torch_det_derivative_is_zero_at_a_singular_matrix():
    (grad,) = _grad(torch.linalg.det, [[1.0, 2.0], [2.0, 4.0]])
    assert np.all(grad == 0.0)  # the adjugate (transposed) is [[4, -2], [-2, 1]]


# ---------------------------------------------------------- the equivalent forwards
def _derivative(replacement: AutogradForward, *arrays, wrt=0):
    tensors = [torch.tensor(a, requires_grad=(i == wrt)) for i, a in enumerate(arrays)]
    out = replacement.function(*tensors)
    (grad,) = torch.autograd.grad(out.sum(), tensors[wrt])
    return out.detach().numpy(), grad.numpy()


def test_ldexp_forward_equals_ldexp_and_differentiates_to_two_to_the_exponent():
    x = np.array([1.5, -0.3, 7.0])
    value, grad = _derivative(ldexp_forward(), x, EXPONENTS)
    np.testing.assert_array_equal(value, np.ldexp(x, EXPONENTS))
    np.testing.assert_array_equal(grad, 2.0 ** EXPONENTS.astype(float))


def test_nextafter_forward_differentiates_to_one_in_x1_ties_included():
    x1, x2 = np.array([0.5, 0.5, -2.0]), np.array([0.5, 0.7, -3.0])
    value, grad = _derivative(nextafter_forward(), x1, x2)
    np.testing.assert_allclose(value, np.nextafter(x1, x2), rtol=1e-15)
    np.testing.assert_array_equal(grad, np.ones(3))
    _, grad2 = _derivative(nextafter_forward(), x1, x2, wrt=1)
    np.testing.assert_array_equal(grad2, np.zeros(3))


@pytest.mark.parametrize("matrix", [
    [[1.0, 2.0], [2.0, 4.0]],  # singular, rank 1
    [[0.3, -1.2, 0.5], [2.0, 0.1, -0.7], [1.1, 0.4, 0.9]],
    [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.5, -1.0, 2.0]],  # singular, rank 2
])
def test_det_forward_equals_det_and_differentiates_to_the_cofactor_matrix(matrix):
    a = np.array([matrix])
    value, grad = _derivative(det_forward(), a)
    np.testing.assert_allclose(value, np.linalg.det(a), atol=1e-12)
    n = a.shape[-1]
    cofactors = np.array([[(-1) ** (i + j) * np.linalg.det(np.delete(np.delete(a[0], i, 0), j, 1))
                           for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(grad[0], cofactors, atol=1e-12)


def test_a_forward_that_is_not_the_operation_makes_autograd_unavailable():
    wrong = AutogradForward(lambda x1, x2: ops.multiply(x1, ops.power(3.0, ops.cast(x2, x1.dtype))),
                            "x1 * 3 ** x2")
    call, shape = packed(knp.Ldexp(), (3,), args=[X0, EXPONENTS], autograd_forward=wrong)
    x = np.array([[1.5, -0.3, 7.0]], dtype="float32")
    with pytest.raises(ReferenceUnavailable, match="does not equal the operation"):
        autograd_vjp(call, x, np.ones((1, 3), "float32"))
    right, _ = packed(knp.Ldexp(), (3,), args=[X0, EXPONENTS], autograd_forward=ldexp_forward())
    np.testing.assert_array_equal(autograd_vjp(right, x, np.ones((1, 3), "float32")),
                                  [[0.5, 0.25, 8.0]])


# ------------------------------------------------------------ right passes, wrong caught
class LdexpIntegerPower(BackwardLdexpOp):
    """torch's derivative: ``2 ** e`` in integers, 0 for negative exponents."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        exponent = ops.convert_to_tensor(EXPONENTS)
        return gradient * ops.cast(ops.power(2, exponent), gradient.dtype)


class NextafterZeroAtTies(BackwardNextafterOp):
    """torch's derivative: 0 to both inputs where ``x1 == x2``."""

    def _partials(self, a, b, gradient):
        return ops.where(ops.equal(a, b), 0.0, gradient), ops.zeros_like(gradient)


class DetZeroWhenSingular(BackwardDetOp):
    """torch's derivative: 0 at singular matrices."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        right = super().call_on_reshaped_gradient(gradient, input)
        singular = ops.equal(ops.expand_dims(ops.expand_dims(klinalg.det(input), -1), -1), 0.0)
        return ops.where(singular, 0.0, right)


class DetAdjugateNotTransposed(BackwardDetOp):
    """``g adj(A)`` instead of ``g adj(A)^T``."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        right = super().call_on_reshaped_gradient(gradient, input)
        return ops.swapaxes(right, -1, -2)


def _ldexp():
    return packed(knp.Ldexp(), (3,), args=[X0, EXPONENTS], autograd_forward=ldexp_forward())


def _nextafter():
    return packed(knp.Nextafter(), [(2,), (2,)], autograd_forward=nextafter_forward())


def _det(n):
    return packed(klinalg.Det(), (n, n), autograd_forward=det_forward())


@pytest.mark.parametrize(("make", "rule", "expected", "named"), [
    (_ldexp, BackwardLdexpOp, {"pass"}, "x1 * 2 ** x2"),
    (_ldexp, LdexpIntegerPower, {"fail"}, None),
    (_nextafter, BackwardNextafterOp, {"pass"}, "x1 + 0 * x2"),
    (_nextafter, NextafterZeroAtTies, {"fail", "boundary"}, None),
    (lambda: _det(2), BackwardDetOp, {"pass"}, "Leibniz"),
    (lambda: _det(2), DetZeroWhenSingular, {"fail", "boundary"}, None),
    (lambda: _det(3), DetAdjugateNotTransposed, {"fail"}, None),
])
def test_the_native_rule_passes_and_wrong_ones_are_caught(make, rule, expected, named):
    call, shape = make()
    result = check_layer(call, rule, input_shape=shape, examples=15, seed=3)
    assert result.verdict in expected, result.reason
    if named is not None:
        assert named in result.reason
        assert named in result.reference.autograd_forward


def test_the_float64_clones_autograd_differentiates_the_equivalent_forward_too():
    """The float64 autograd of the finite differences' clone (rounding measurements, the
    second opinion) differentiates the same replacement."""
    from jacverify.check.references import make_fd_model

    call, shape = _ldexp()
    fd = make_fd_model(call, shape, np.random.default_rng(0))
    grad = fd.vjp(np.array([[1.5, -0.3, 7.0]]), np.ones((1, 3)))
    np.testing.assert_array_equal(grad, [[0.5, 0.25, 8.0]])
