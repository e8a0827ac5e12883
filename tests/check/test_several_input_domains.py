"""Domain maps over several drawn inputs (``elementwise_domains.each_input``) and the
configurations that use them: ``power`` of two tensors (positive base, bounded exponent),
``mod``/``fmod`` of two tensors (divisor away from 0), ``log1p`` (above -1). The map and its
pull-back against torch autograd; the native rules pass; wrong twins are caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from keras import ops

from jacverify import check_layer, registered_rules
from jacverify.check.adapters import Packing
from jacverify.check.layer_configs import elementwise_domains as domains
from jacverify.check.layer_configs._common import packed
from jacverify.keras_internals import ops_numpy as knp

registered_rules()

from jacverify.backward.rules.ops.arithmetic import BackwardPowerOp  # noqa: E402
from jacverify.backward.rules.ops.exponential import BackwardLog1pOp  # noqa: E402
from jacverify.backward.rules.ops.piecewise import BackwardFmodOp, BackwardModOp  # noqa: E402

SHAPES = [(2, 1), (2, 3)]  # broadcast against each other, flattened and concatenated


@pytest.mark.parametrize("shapes", [SHAPES, [(3,), (3,)]])
def test_each_input_maps_each_inputs_coordinates_by_its_own_function(shapes):
    domain = domains.positive_base(shapes)
    packing = Packing(tuple(shapes))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, *packing.shape)) * 100).astype("float32")
    base, exponent = packing.split_array(np.asarray(domain(x)))
    want_base, want_exponent = packing.split_array(x)
    np.testing.assert_allclose(base, np.logaddexp(0.0, want_base) + 1e-3, rtol=1e-6)
    np.testing.assert_allclose(exponent, 3.0 * want_exponent / (1 + np.abs(want_exponent)),
                               rtol=1e-6)
    assert np.all(base > 0) and np.all(np.abs(exponent) < 3.0)


def test_each_input_pull_back_is_autograd_of_the_map():
    domain = domains.divisor_apart(SHAPES, negative=True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8)).astype("float32")
    g = rng.standard_normal((2, 8)).astype("float32")
    x_t = torch.tensor(x, requires_grad=True)
    (want,) = torch.autograd.grad(domain(x_t), x_t, torch.tensor(g))
    got = np.asarray(domain.pull_back(x, g))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-7)
    divisor = Packing(tuple(SHAPES)).split_array(np.asarray(domain(x)))[1]
    assert np.all(divisor <= -0.5)


class PowerExponentWithoutLog(BackwardPowerOp):
    """``g x1 ** x2`` to the exponent: forgets ``log(x1)``."""

    def _partials(self, a, b, gradient):
        g1, _ = super()._partials(a, b, gradient)
        return g1, gradient * ops.power(a, b)


class ModDivisorSignFlipped(BackwardModOp):
    """``+g floor(x1 / x2)`` to the divisor."""

    def _partials(self, a, b, gradient):
        return gradient, gradient * ops.floor(a / b)


class FmodDivisorFloored(BackwardFmodOp):
    """``-g floor(x1 / x2)`` to the divisor (mod's, wrong where the quotient is negative)."""

    def _partials(self, a, b, gradient):
        return gradient, -gradient * ops.floor(a / b)


class Log1pOfX(BackwardLog1pOp):
    """``g / x``: log's derivative."""

    def derivative(self, x):
        return 1.0 / x


def _two(cls, domain):
    return lambda: packed(cls(), SHAPES, domain=domain(SHAPES))


def _log1p():
    return packed(knp.Log1p(), (2, 3), domain=domains.above_minus_one((2, 3)))


@pytest.mark.parametrize(("make", "rule", "expected"), [
    (_two(knp.Power, domains.positive_base), BackwardPowerOp, {"pass"}),
    (_two(knp.Power, domains.positive_base), PowerExponentWithoutLog, {"fail"}),
    (_two(knp.Mod, lambda s: domains.divisor_apart(s, False)), BackwardModOp, {"pass"}),
    (_two(knp.Mod, lambda s: domains.divisor_apart(s, True)), BackwardModOp, {"pass"}),
    (_two(knp.Mod, lambda s: domains.divisor_apart(s, False)), ModDivisorSignFlipped, {"fail"}),
    (_two(knp.Fmod, lambda s: domains.divisor_apart(s, True)), BackwardFmodOp, {"pass"}),
    (_two(knp.Fmod, lambda s: domains.divisor_apart(s, True)), FmodDivisorFloored, {"fail"}),
    (_log1p, BackwardLog1pOp, {"pass"}),
    (_log1p, Log1pOfX, {"fail"}),
])
def test_native_rules_pass_inside_the_domain_and_wrong_twins_are_caught(make, rule, expected):
    call, shape = make()
    result = check_layer(call, rule, input_shape=shape, examples=15, seed=5)
    assert result.verdict in expected, result.reason
    assert result.reference.fd_dtype == "float64"
