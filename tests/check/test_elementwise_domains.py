"""Elementwise operations defined on part of the line, checked inside their domain
(``jacverify.check.layer_configs.elementwise_domains``): the maps land inside the domain on
every drawn value, the registered rules pass there, and wrong twins are caught through the
map."""

import warnings

import numpy as np
import pytest
import torch

from jacverify import check_layer, check_registry
from jacverify.backward.registry import get_backward_rule
from jacverify.check.layer_configs._common import packed
from jacverify.check.layer_configs.elementwise_domains import (
    MARGIN,
    above_one,
    inside_unit_interval,
    positive,
)
from jacverify.keras_internals import ops_math as kmath
from jacverify.keras_internals import ops_numpy as knp

POSITIVE = (knp.Log, knp.Log2, knp.Log10, knp.Sqrt, kmath.Rsqrt)
UNIT_INTERVAL = (knp.Arcsin, knp.Arccos, kmath.Erfinv)
DOMAIN_OPS = (*POSITIVE, *UNIT_INTERVAL, knp.Arccosh)

#: What the checker draws on purpose: zeros, values next to 0, large and saturating ones.
DRAWN = np.array([0.0, 1e-30, -1e-30, 1.0, -1.0, 9.0, -9.0, 1e6, -1e6, 3e38, -3e38])


@pytest.mark.parametrize("make_domain, low, high", [
    (positive, MARGIN, np.inf),
    (above_one, 1.0 + MARGIN, np.inf),
    (inside_unit_interval, -1.0 + MARGIN, 1.0 - MARGIN),
], ids=["positive", "above_one", "unit_interval"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_drawn_value_lands_inside_the_domain(make_domain, low, high, dtype):
    """In both dtypes, within the map's margin of the edge, and with a positive derivative
    (torch autograd) where it does not underflow: the map is increasing, it hides nothing."""
    domain = make_domain((DRAWN.size,)).clone_to_dtype(dtype)
    x = torch.tensor(DRAWN[None].astype(dtype), requires_grad=True)
    mapped = domain(x)
    values = mapped.detach().numpy()
    rounding = 4 * np.finfo("float32").eps  # the map's constants are float32 numbers
    assert np.all(values >= low - abs(low) * rounding), values
    assert np.all(values <= high + abs(high) * rounding), values
    (slope,) = torch.autograd.grad(mapped.sum(), x)
    moderate = np.abs(DRAWN) <= 9.0
    assert np.all(slope.numpy()[0, moderate] > 0), slope


def test_the_registry_configurations_carry_a_domain_map_and_pass():
    result = check_registry(DOMAIN_OPS, configs=1, examples=10, seed=0)
    verdicts = [(c.keras_class, c.check.verdict) for c in result.checks]
    assert verdicts == [(c.keras_class, "pass") for c in result.checks], [
        c.check.reason for c in result.checks]
    assert len(result.checks) == len(DOMAIN_OPS)
    assert all("domain" in c.config for c in result.checks)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_domain_ops_pass_at_three_seeds(seed):
    result = check_registry(DOMAIN_OPS, configs=3, examples=30, seed=seed)
    failing = [(c.keras_class, c.config, c.check.reason) for c in result.checks
               if c.check.verdict != "pass"]
    assert not failing, failing


def _scaled(cls, factor: float):
    """The registered rule of ``cls`` with its result multiplied by ``factor``."""
    right = get_backward_rule(cls)

    def call_on_reshaped_gradient(self, gradient, input=None, training=None, mask=None):
        return factor * right.call_on_reshaped_gradient(self, gradient, input)

    return type(f"Scaled{right.__name__}", (right,),
                {"call_on_reshaped_gradient": call_on_reshaped_gradient})


@pytest.mark.parametrize("cls, make_domain", [
    (knp.Log, positive), (knp.Sqrt, positive), (knp.Arcsin, inside_unit_interval),
    (kmath.Erfinv, inside_unit_interval), (knp.Arccosh, above_one),
], ids=["log", "sqrt", "arcsin", "erfinv", "arccosh"])
def test_a_rule_off_by_a_factor_is_caught_through_the_map(cls, make_domain):
    """log2's mistake on log (a forgotten ``ln 2``) and 1 % off elsewhere: both fail, while
    the registered rule passes on the same configuration."""
    factor = 1.0 / np.log(2.0) if cls is knp.Log else 1.01
    layer, shape = packed(cls(), (3,), domain=make_domain((3,)))
    right = check_layer(layer, get_backward_rule(cls), input_shape=shape, examples=15,
                        seed=0)
    assert right.verdict == "pass", right.summary()
    layer, shape = packed(cls(), (3,), domain=make_domain((3,)))
    wrong = check_layer(layer, _scaled(cls, factor), input_shape=shape, examples=15, seed=0)
    assert wrong.verdict == "fail", wrong.summary()


def test_outside_the_domain_numpy_stays_silent():
    """log drawn anywhere: the references are NaN on half the inputs; the checker says so in
    its verdict, and numpy warns about nothing in the user's process."""
    layer, shape = packed(knp.Log(), (3, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check = check_layer(layer, input_shape=shape, examples=10, seed=0)
    assert check.verdict == "inconclusive", check.summary()
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [
        f"{w.filename}:{w.lineno}: {w.message}" for w in caught]
