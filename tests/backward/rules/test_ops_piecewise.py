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

from jacverify.backward.rules.ops.piecewise import BackwardModOp  # noqa: E402

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
