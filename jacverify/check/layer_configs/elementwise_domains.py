"""Domain maps of the elementwise operations defined on part of the line only, and the
configurations that check them inside it.

The checker draws zeros, values next to 0 and large magnitudes on purpose; ``sqrt``, ``log``
and ``arcsin`` are NaN on half of those, where neither finite differences nor autograd give a
reference, so a configuration drawn anywhere leaves too few examples to judge. Each
configuration here carries a :class:`jacverify.check.domain.DomainMap` ``m`` onto the open
domain, stopping a margin short of its edge (where the derivative is infinite):

* ``(0, inf)`` (``sqrt``, ``rsqrt``, ``log``, ``log2``, ``log10``):
  ``m(x) = 1e-3 + softplus(x)``;
* ``(-1, 1)`` (``arcsin``, ``arccos``, ``erfinv``): ``m(x) = 0.999 softsign(x)``
  (``softsign(x) = x / (1 + |x|)`` approaches its bounds slowly: ``tanh`` rounds to 1 in
  float32 from ``|x| > 9`` on, where its float32 derivative is 0 and its float64 one is not,
  so that the references of ``erfinv``, steep next to 1, disagree there);
* ``(1, inf)`` (``arccosh``): ``m(x) = 1.001 + softplus(x)``.

Each map is increasing, so locally invertible: it hides no error of the rule. The drawn values
near 0 land in the middle of the domain, and the drawn large magnitudes (negative ones for
``softplus``, either sign for ``softsign``) land next to the domain's edge, where the derivative is
largest and a rule that divides by the wrong power shows most.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st
from keras import ops

from jacverify.check.domain import DomainMap, domain_map
from jacverify.check.layer_configs._common import layer_strategy, packed, sizes

#: How far short of the domain's edge each map stops.
MARGIN = 1e-3


def positive(shape: tuple) -> DomainMap:
    """The map onto ``(0, inf)``: ``1e-3 + softplus(x)``."""
    return domain_map(
        shape, lambda x: ops.add(ops.softplus(x), MARGIN),
        f"{MARGIN} + softplus(x): positive, down to {MARGIN}",
    )


def above_one(shape: tuple) -> DomainMap:
    """The map onto ``(1, inf)``: ``1.001 + softplus(x)``."""
    return domain_map(
        shape, lambda x: ops.add(ops.softplus(x), 1.0 + MARGIN),
        f"{1.0 + MARGIN} + softplus(x): above 1, down to {1.0 + MARGIN}",
    )


def inside_unit_interval(shape: tuple) -> DomainMap:
    """The map onto ``(-1, 1)``: ``0.999 tanh(x)``."""
    return domain_map(
        shape, lambda x: ops.multiply(ops.softsign(x), 1.0 - MARGIN),
        f"{1.0 - MARGIN} softsign(x): inside (-1, 1), up to {MARGIN} from either end",
    )


@layer_strategy
def inside(draw, cls: type, make_domain: Callable[[tuple], DomainMap]):
    """``cls()`` on an input of rank 1 to 3 (batch excluded), checked inside the domain
    ``make_domain(shape)`` maps onto."""
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    return packed(cls(), shape, domain=make_domain(shape))


def strategy(cls: type, make_domain: Callable[[tuple], DomainMap]) -> Callable:
    """The registry's factory of :func:`inside` configurations of ``cls``."""
    return lambda: inside(cls, make_domain)
