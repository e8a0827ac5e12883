"""Rules of the trigonometric, hyperbolic, exponential and logarithmic ``keras.ops`` against
torch autograd, float32 and float64, with extra Jacobian axes; wrong twins rejected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops
from keras.src.ops import numpy as knp

from jacverify import registered_rules
from tests.backward.op_cases import TOLERANCES, check_case, check_rule_float64

registered_rules()

from jacverify.backward.rules.ops.trigonometric import BackwardCosOp  # noqa: E402

CASES = {
    "sin": (ops.sin, [(4,)]),
    "cos": (ops.cos, [(2, 3)]),
    "tan": (ops.tan, [(4,)], "unit"),
    "arcsin": (ops.arcsin, [(4,)], "unit"),
    "arccos": (ops.arccos, [(4,)], "unit"),
    "arctan": (ops.arctan, [(4,)]),
    "sinh": (ops.sinh, [(4,)]),
    "cosh": (ops.cosh, [(4,)]),
    "arcsinh": (ops.arcsinh, [(4,)]),
    "arccosh": (ops.arccosh, [(4,)], "above_one"),
    "arctanh": (ops.arctanh, [(4,)], "unit"),
    "sinc": (ops.sinc, [(5,)]),
    "deg2rad": (ops.deg2rad, [(4,)]),
    "rad2deg": (ops.rad2deg, [(4,)]),
    "arctan2": (ops.arctan2, [(3, 4), (3, 4)]),
    "arctan2_broadcast": (ops.arctan2, [(3, 4), (1, 4)]),
    "arctan2_constant": (lambda x: ops.arctan2(np.float32(0.5) * np.ones((4,), "float32"), x),
                         [(4,)]),
    "hypot": (ops.hypot, [(4,), (4,)]),
    "exp2": (ops.exp2, [(4,)]),
    "expm1": (ops.expm1, [(4,)]),
    "log1p": (ops.log1p, [(4,)], "positive"),
    "log2": (ops.log2, [(4,)], "positive"),
    "log10": (ops.log10, [(4,)], "positive"),
    "cbrt": (ops.cbrt, [(4,)], "nonzero"),
    "logaddexp": (ops.logaddexp, [(4,), (1,)]),
    "logaddexp2": (ops.logaddexp2, [(2, 4), (2, 4)]),
    # torch's autograd of ldexp is 0 for negative exponents (see test_ldexp_negative_exponent)
    "ldexp": (lambda x: ops.ldexp(x, np.array([0, 1, 2, 3], "int32")), [(4,)]),
    "issue_chain": (lambda x, y: ops.arctan(ops.log1p(ops.power(ops.cos(ops.sin(x)), 2.0)))
                    + ops.where(y > 0, ops.sin(y), ops.cos(y)), [(4,), (4,)]),
}
# arctan2 of a float32 array constant: Keras refuses to mix it with float64 tensors.
FLOAT64_SKIP = {"arctan2_constant"}
# Keras computes these binary ops of float64 tensors in float32 (result_type(..., float)), and
# types the chain's intermediate results float32: the model itself, the reference, is only
# float32-precise there.
FLOAT32_FORWARD = {"arctan2", "arctan2_broadcast", "hypot", "ldexp", "logaddexp",
                   "logaddexp2", "issue_chain"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_autograd_float32(name, tmp_path):
    save = tmp_path / f"{name}.keras" if name in {"sin", "arctan2", "ldexp"} else None
    check_case(CASES[name], "float32", save_to=save)


@pytest.mark.parametrize("name", sorted(set(CASES) - FLOAT64_SKIP))
def test_rule_matches_autograd_float64(name):
    loose = TOLERANCES["float32"] if name in FLOAT32_FORWARD else None
    check_case(CASES[name], "float64", tolerances=loose)


FLOAT64_RULES = {
    "arctan2": (knp.Arctan2(), torch.atan2, [(4,), (4,)]),
    "hypot": (knp.Hypot(), torch.hypot, [(2, 3), (2, 3)]),
    "logaddexp": (knp.Logaddexp(), torch.logaddexp, [(4,), (4,)]),
    "logaddexp2": (knp.Logaddexp2(), torch.logaddexp2, [(4,), (4,)]),
    "sinc": (knp.Sinc(), torch.sinc, [(6,)]),
}


@pytest.mark.parametrize("name", sorted(FLOAT64_RULES))
def test_rule_is_float64_precise(name):
    """Against torch in float64 (Keras computes these binary ops of float64 in float32)."""
    operation, torch_fn, shapes = FLOAT64_RULES[name]
    check_rule_float64(operation, torch_fn, shapes)


def test_sinc_at_zero_is_zero():
    """sinc is even and smooth: its derivative at 0 is 0 (the formula is 0/0 there)."""
    from jacverify import clone_to_backward
    from tests.backward.model_reference import functional

    model = functional(ops.sinc, [(3,)])
    backward = clone_to_backward(model)
    got = ops.convert_to_numpy(backward([np.zeros((1, 3), "float32"),
                                         np.ones((1, 3), "float32")]))
    np.testing.assert_array_equal(got, np.zeros((1, 3)))


def test_ldexp_negative_exponent():
    """``ldexp(x, e) = x 2^e``: the gradient is ``g 2^e`` (by hand; torch's autograd gives 0
    for negative integer exponents although its forward value is right)."""
    from jacverify import clone_to_backward
    from tests.backward.model_reference import functional

    exponent = np.array([0, 1, -2, 3], "int32")
    model = functional(lambda x: ops.ldexp(x, exponent), [(4,)])
    g = np.array([[1.0, -2.0, 3.0, 0.5]], "float32")
    got = ops.convert_to_numpy(clone_to_backward(model)([np.ones((1, 4), "float32"), g]))
    np.testing.assert_allclose(got, g * 2.0 ** exponent)


@pytest.mark.parametrize("n,increasing", [(4, False), (3, True), (1, False), (2, True)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vander_by_hand(n, increasing, dtype):
    """``vander`` (torch's autograd cannot differentiate Keras's in-place forward): against
    ``sum_k g_k p_k x^(p_k - 1)`` computed with numpy, 0 and negative values included."""
    from jacverify import clone_to_backward
    from tests.backward.model_reference import functional

    model = functional(lambda x: ops.vander(x, N=n, increasing=increasing), [()], dtype=dtype)
    x = np.array([0.0, -1.5, 0.7, 2.0], dtype)
    g = np.random.default_rng(0).standard_normal((4, n)).astype(dtype)
    got = ops.convert_to_numpy(clone_to_backward(model)([x, g]))
    powers = np.arange(n) if increasing else np.arange(n)[::-1]
    safe = np.maximum(powers - 1, 0)
    expected = np.sum(g * powers * x[:, None] ** safe, axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == "float32" else 1e-12)


class _CosWithoutMinus(BackwardCosOp):
    def derivative(self, x):
        return ops.sin(x)


def test_wrong_twin_is_rejected():
    check_case(CASES["cos"], "float32")
    with pytest.raises(AssertionError):
        check_case(CASES["cos"], "float32", mapping={knp.Cos: _CosWithoutMinus}, extra_axes=())
