"""Rules of the piecewise ``keras.ops`` (zero-gradient constants, ``fabs``, ``mod``,
``fmax``...) and the refused operations: against torch autograd where torch differentiates
the operation, by hand where it does not (``heaviside``, ``nextafter``, ``floor_divide``)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from keras.src.ops import numpy as knp

from jacverify import clone_to_backward, registered_rules
from tests.backward.model_reference import functional
from tests.backward.op_cases import TOLERANCES, check_case

registered_rules()

from jacverify.backward.rules.ops.piecewise import BackwardDivideNoNanOp, BackwardModOp  # noqa: E402

CASES = {
    "fabs": (ops.fabs, [(4,)], "nonzero"),
    "nan_to_num": (ops.nan_to_num, [(4,)]),
    "mod": (ops.mod, [(4,), (4,)], ["real", "nonzero"]),
    "mod_constant": (lambda x: ops.mod(x, 0.75), [(4,)]),
    "fmod": (ops.fmod, [(2, 3), (1, 3)], ["real", "nonzero"]),
    "fmax": (ops.fmax, [(4,), (4,)]),
    "fmin": (ops.fmin, [(3, 2), (3, 1)]),
    "divide_no_nan": (ops.divide_no_nan, [(4,), (4,)], ["real", "nonzero"]),
    "zero_gradient": (lambda x: ops.sign(x) + ops.floor(x) + ops.ceil(x) + ops.round(x)
                      + ops.trunc(x) + ops.round(x, 1) + ops.zeros_like(x) + ops.ones_like(x)
                      + ops.full_like(x, 2.0) + x, [(4,)]),
    "real_conj_copy": (lambda x: ops.real(x) * ops.conj(x) + ops.copy(x) + ops.array(x),
                       [(4,)]),
}
# Keras computes the binary ops of float64 tensors (mod, fmod, fmax, fmin, divide_no_nan) in
# float32 or types them float32: the model, the reference, is float32-precise.
FLOAT32_FORWARD = {"mod", "mod_constant", "fmod", "fmax", "fmin", "divide_no_nan",
                   "zero_gradient", "real_conj_copy"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float32(name, tmp_path):
    save = tmp_path / f"{name}.keras" if name in {"zero_gradient", "mod"} else None
    check_case(CASES[name], "float32", save_to=save)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float64(name):
    loose = TOLERANCES["float32"] if name in FLOAT32_FORWARD else None
    check_case(CASES[name], "float64", tolerances=loose)


def _backward(fn, shapes, xs, g):
    model = functional(fn, shapes)
    result = clone_to_backward(model)([*xs, g])
    return [ops.convert_to_numpy(r) for r in (result if isinstance(result, list) else [result])]


def test_heaviside_by_hand():
    """``heaviside(x1, x2)`` is a step in ``x1`` (0) and equals ``x2`` where ``x1 == 0``."""
    x1 = np.array([[-1.0, 0.0, 2.0, 0.0]], "float32")
    x2 = np.array([[0.3, 0.5, 0.7, -1.0]], "float32")
    g = np.array([[1.0, 2.0, 3.0, 4.0]], "float32")
    d1, d2 = _backward(ops.heaviside, [(4,), (4,)], [x1, x2], g)
    np.testing.assert_array_equal(d1, np.zeros_like(g))
    np.testing.assert_array_equal(d2, [[0.0, 2.0, 0.0, 4.0]])


def test_nextafter_and_floor_divide_by_hand():
    x1 = np.array([[-1.0, 0.5, 2.0]], "float32")
    x2 = np.array([[3.0, -1.0, 0.7]], "float32")
    g = np.array([[1.0, 2.0, 3.0]], "float32")
    d1, d2 = _backward(ops.nextafter, [(3,), (3,)], [x1, x2], g)
    np.testing.assert_array_equal(d1, g)
    np.testing.assert_array_equal(d2, np.zeros_like(g))
    d1, d2 = _backward(ops.floor_divide, [(3,), (3,)], [x1, x2], g)
    np.testing.assert_array_equal(d1, np.zeros_like(g))
    np.testing.assert_array_equal(d2, np.zeros_like(g))


def test_fmax_tie_and_nan():
    """Ties share the gradient (a subgradient); a NaN operand gives all to the other."""
    x1 = np.array([[1.0, np.nan, 2.0]], "float32")
    x2 = np.array([[1.0, 3.0, np.nan]], "float32")
    g = np.array([[2.0, 2.0, 2.0]], "float32")
    d1, d2 = _backward(ops.fmax, [(3,), (3,)], [x1, x2], g)
    np.testing.assert_array_equal(d1, [[1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(d2, [[1.0, 2.0, 0.0]])


@pytest.mark.parametrize("fn,shapes,match", [
    (lambda x: ops.view(x, "int32"), [(4,)], None),
    (lambda x: ops.view(x, "float16"), [(4,)], "View"),
    (lambda x, y: ops.outer(x, y), [(3,), (2,)], "Outer.*batch"),
    (lambda x, y: ops.vdot(x, y), [(3,), (3,)], "Vdot.*batch"),
    (lambda x, y: ops.linspace(x, y, 4), [(3,), (3,)], "Linspace.*batch"),
])
def test_refused_operations_name_the_reason(fn, shapes, match):
    model = functional(fn, shapes)
    if match is None:  # an integer view carries no gradient: nothing to refuse
        clone_to_backward(model)
        return
    with pytest.raises(ValueError, match=match):
        clone_to_backward(model)


def test_creation_functions_in_a_graph_build():
    """Creation functions take no tensor: constants of the graph, nothing to differentiate."""
    case = (lambda x: x * ops.arange(4, dtype="float32") + ops.ones((4,)) * ops.eye(4)[1]
            + ops.linspace(0.0, 1.0, 4) + ops.full((4,), 0.5) + ops.zeros((4,)) + ops.tri(4)[2],
            [(4,)])
    check_case(case, "float32")


class _ModWithoutFloor(BackwardModOp):
    """Forgets the ``-floor(x1 / x2)`` of the divisor."""

    def _partials(self, a, b, gradient):
        return gradient, ops.zeros_like(gradient)


def test_wrong_twin_is_rejected():
    check_case(CASES["mod"], "float32")
    with pytest.raises(AssertionError):
        check_case(CASES["mod"], "float32", mapping={knp.Mod: _ModWithoutFloor}, extra_axes=())


# ---------------------------------------------------------------- divide_no_nan in float64
# x2 = 1e-100 is 0 once rounded to float32 (Keras divides float64 operands in float32 outside
# float64_precision: the operation returns 0 there) and a divisor like any other in float64.
DIVISOR_BELOW_FLOAT32 = np.array([[1e-100, 0.0, 2.0]])
DIVIDEND = np.array([[0.5, 0.5, 3.0]])


def _divide_no_nan_autograd(g):
    """torch autograd of ``keras.ops.divide_no_nan`` itself (in the active promotion)."""
    import torch

    a = torch.tensor(DIVIDEND, requires_grad=True)
    b = torch.tensor(DIVISOR_BELOW_FLOAT32, requires_grad=True)
    y = ops.divide_no_nan(a, b)
    return [d.numpy() for d in torch.autograd.grad(y, (a, b), torch.as_tensor(g, dtype=y.dtype))]


class _DivideNoNanFloat64Divisor(BackwardDivideNoNanOp):
    """Tests the divisor for 0 and divides in the gradient's dtype, whatever the operation
    computes in."""

    def _partials(self, a, b, gradient):
        b = ops.broadcast_to(b, ops.shape(gradient))
        zero = ops.equal(b, 0.0)
        safe = ops.where(zero, ops.ones_like(b), b)
        g1 = ops.where(zero, ops.zeros_like(gradient), gradient / safe)
        return g1, -g1 * a / safe


def _divide_no_nan_rule(rule_class=BackwardDivideNoNanOp):
    from jacverify.backward.factory import make_rule

    call = {"args": [{"__input__": 0}, {"__input__": 1}], "kwargs": {}}
    return make_rule(knp.DivideNoNan(), [(3,), (3,)], [(3,)], rule=rule_class,
                     call_arguments=call)


@pytest.mark.parametrize("in_float64_precision", [False, True])
def test_divide_no_nan_rule_sees_the_divisors_the_operation_sees(float64_session,
                                                                  in_float64_precision):
    """Outside float64_precision the operation rounds x2 = 1e-100 to 0 and is constant there
    (autograd 0, 0); within it, the derivatives are 1 / x2 and -x1 / x2^2. The rule gives
    both, and a rule dividing in float64 whatever the operation does is off outside it."""
    import contextlib

    from jacverify.backward.precision import float64_precision

    g = np.array([[1.0, 2.0, -1.0]])
    context = float64_precision() if in_float64_precision else contextlib.nullcontext()
    with context:
        expected = _divide_no_nan_autograd(g)
        got = _divide_no_nan_rule()([ops.convert_to_tensor(g),
                                     [ops.convert_to_tensor(DIVIDEND),
                                      ops.convert_to_tensor(DIVISOR_BELOW_FLOAT32)]])
        wrong = _divide_no_nan_rule(_DivideNoNanFloat64Divisor)(
            [ops.convert_to_tensor(g), [ops.convert_to_tensor(DIVIDEND),
                                        ops.convert_to_tensor(DIVISOR_BELOW_FLOAT32)]])
    # g / x2 and -g x1 / x2^2; 0 where x2 is 0 (the second), or seen as 0 (the first)
    if in_float64_precision:
        by_hand = [np.array([[1e100, 0.0, -0.5]]), np.array([[-0.5e200, 0.0, 0.75]])]
    else:
        by_hand = [np.array([[0.0, 0.0, -0.5]]), np.array([[0.0, 0.0, 0.75]])]
    for rule_grad, autograd, hand in zip(got, expected, by_hand, strict=True):
        assert ops.convert_to_numpy(rule_grad).dtype == np.float64
        np.testing.assert_allclose(ops.convert_to_numpy(rule_grad), autograd, rtol=1e-6)
        np.testing.assert_allclose(autograd, hand, rtol=1e-6)
    wrong_first = ops.convert_to_numpy(wrong[0])[0, 0]
    assert (wrong_first == 1e100) if not in_float64_precision else (wrong_first == got[0][0, 0])


def test_checker_catches_a_divide_no_nan_rule_dividing_where_the_operation_sees_0(
        float64_session):
    """In a float64 session the checker draws x2 = 5e-324 (0 + 1 ulp): the operation sees 0
    there (and returns 0); the rule passes, a rule dividing in float64 returns inf and is
    caught."""
    from jacverify import check_layer
    from jacverify.check.layer_configs._common import packed

    layer, shapes = packed(knp.DivideNoNan(), [(1,), (1,)])
    right = check_layer(layer, BackwardDivideNoNanOp, input_shape=shapes, seed=0)
    assert right.dtype == "float64" and right.verdict == "pass", right.reason
    layer, shapes = packed(knp.DivideNoNan(), [(1,), (1,)])
    wrong = check_layer(layer, _DivideNoNanFloat64Divisor, input_shape=shapes, seed=0)
    assert wrong.verdict in ("fail", "boundary"), wrong.reason
    assert "inf" in wrong.reason and "4.94065646e-324" in wrong.reason


# ---------------------------------------------------------------------- mod in float64
class _ModFloorOfQuotient(BackwardModOp):
    """``-g floor(x1 / x2)`` by ``ops.floor``: float32 for float64 operands in Keras (outside
    float64_precision), and the rounded quotient's floor."""

    def _partials(self, a, b, gradient):
        return gradient, -gradient * ops.floor(a / b)


def _mod_rule(rule_class):
    from jacverify.backward.factory import make_rule

    call = {"args": [{"__input__": 0}, {"__input__": 1}], "kwargs": {}}
    return make_rule(knp.Mod(), [(3,), (3,)], [(3,)], rule=rule_class, call_arguments=call)


def test_mod_rule_takes_the_piece_the_operation_takes_in_float64(float64_session):
    """Quotients 2.9999999999 (floor 2; 3 once rounded to float32), -1e-323 (floor -1; 0 in
    float32) and 1.5: the rule's divisor gradient is torch autograd's of ``keras.ops.mod``
    (``-g floor(x1 / x2)`` by hand), the floor of the quotient rounded to float32 is not."""
    import torch

    a_np = np.array([[2.9999999999 * 0.5, 5e-324, 1.5 * -0.75]])
    b_np = np.array([[0.5, -0.5932, -0.75]])
    g = np.array([[1.0, 2.0, -1.0]])
    a = torch.tensor(a_np, requires_grad=True)
    b = torch.tensor(b_np, requires_grad=True)
    autograd = torch.autograd.grad(ops.mod(a, b), (a, b), torch.as_tensor(g))[1].numpy()
    np.testing.assert_array_equal(autograd, -g * np.array([[2.0, -1.0, 1.0]]))
    inputs = [ops.convert_to_tensor(g), [ops.convert_to_tensor(a_np), ops.convert_to_tensor(b_np)]]
    got = ops.convert_to_numpy(_mod_rule(BackwardModOp)(inputs)[1])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, autograd)
    wrong = ops.convert_to_numpy(_mod_rule(_ModFloorOfQuotient)(inputs)[1])
    assert wrong[0, 0] == -3.0 and wrong[0, 1] == 0.0  # the pieces of float32 quotients
