"""Rules of ``cumsum``, ``cumprod`` (zeros included), ``nancumsum``, ``nancumprod``, ``diff``
and ``trapezoid`` against torch autograd, float32 and float64, with extra Jacobian axes;
``axis=None`` refused; a wrong twin rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops
from keras.src.ops import numpy as knp

from jacverify import clone_to_backward, registered_rules
from tests.backward.model_reference import assert_model_matches_autograd, functional
from tests.backward.op_cases import TOLERANCES, check_case, check_rule_float64

registered_rules()

from jacverify.backward.rules.ops.cumulative import BackwardCumsumOp  # noqa: E402

CASES = {
    "cumsum": (lambda x: ops.cumsum(x, axis=1), [(4, 3)]),
    "cumsum_last": (lambda x: ops.cumsum(x, axis=-1), [(2, 5)]),
    "cumprod": (lambda x: ops.cumprod(x, axis=-1), [(3, 4)]),
    "cumprod_middle": (lambda x: ops.cumprod(x, axis=1), [(4, 2)]),
    "nancumsum": (lambda x: ops.nancumsum(x, axis=-1), [(4,)]),
    "nancumprod": (lambda x: ops.nancumprod(x, axis=1), [(4,)]),
    "diff": (lambda x: ops.diff(x, n=2, axis=1), [(5, 2)]),
    "diff_last": (lambda x: ops.diff(x), [(2, 4)]),
    "trapezoid": (lambda x: ops.trapezoid(x, dx=0.5, axis=-1), [(2, 5)]),
    "trapezoid_points": (lambda x: ops.trapezoid(x, x=[0.0, 0.5, 2.0, 3.0], axis=1),
                         [(4,)]),
    # Sample points as an array: Keras' own get_config of the operation raises.
    "trapezoid_array": (lambda x: ops.trapezoid(x, x=np.array([0.0, 1.0, 1.5]), axis=-1),
                        [(2, 3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float32(name, tmp_path):
    saved = {"cumprod", "trapezoid_points", "trapezoid_array"}
    save = tmp_path / f"{name}.keras" if name in saved else None
    check_case(CASES[name], "float32", save_to=save)


# Keras computes cumsum and cumprod of float64 tensors in float32 (its type promotion maps
# 64-bit dtypes to 32-bit): the model, the reference, is float32-precise there;
# test_rule_is_float64_precise checks the rules against torch in float64.
FLOAT32_FORWARD = {"cumsum", "cumsum_last", "cumprod", "cumprod_middle", "nancumsum",
                   "nancumprod"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float64(name):
    loose = TOLERANCES["float32"] if name in FLOAT32_FORWARD else None
    check_case(CASES[name], "float64", tolerances=loose)


FLOAT64_RULES = {
    "cumsum": (knp.Cumsum(axis=1), lambda x: torch.cumsum(x, 1), [(7, 3)]),
    "cumprod": (knp.Cumprod(axis=-1), lambda x: torch.cumprod(x, -1), [(2, 6)]),
    "nancumsum": (knp.Nancumsum(axis=-1), lambda x: torch.cumsum(x, -1), [(5,)]),
    "diff": (knp.Diff(n=2, axis=1), lambda x: torch.diff(x, n=2, dim=1), [(5, 2)]),
}


@pytest.mark.parametrize("name", sorted(FLOAT64_RULES))
def test_rule_is_float64_precise(name):
    operation, torch_fn, shapes = FLOAT64_RULES[name]
    check_rule_float64(operation, torch_fn, shapes)


@pytest.mark.parametrize("op", [ops.cumprod, ops.nancumprod])
def test_cumprod_with_zeros_and_nan(op):
    """Exact where the input has zeros (one or several); NaN entries of nancumprod count as 1
    and get 0."""
    model = functional(lambda x: op(x, axis=-1), [(4,)])
    xs = [np.array([[1.0, 0.0, 2.0, 3.0], [0.0, 0.0, 1.0, 2.0], [2.0, 3.0, 0.0, -1.0]],
                   "float32")]
    assert_model_matches_autograd(model, xs)
    if op is ops.nancumprod:
        x = np.array([[1.5, np.nan, 2.0, 0.0]], "float32")
        g = np.ones((1, 4), "float32")
        got = ops.convert_to_numpy(clone_to_backward(model)([x, g]))
        # d/dx_0 of (x0, x0, 2 x0, 0) = 1 + 1 + 2 + 0; d/dx_2 = x0 + 0; d/dx_3 = 3.
        np.testing.assert_allclose(got, [[4.0, 0.0, 1.5, 3.0]])


def test_axis_none_is_refused():
    model = functional(lambda x: ops.cumsum(x), [(3,)])
    with pytest.raises(ValueError, match="batch"):
        clone_to_backward(model)


class _CumsumForward(BackwardCumsumOp):
    """Accumulates the gradient forward instead of backward."""

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return ops.cumsum(gradient, axis=self._axis)


def test_wrong_twin_is_rejected():
    with pytest.raises(AssertionError):
        check_case(CASES["cumsum"], "float32", mapping={knp.Cumsum: _CumsumForward},
                   extra_axes=())
