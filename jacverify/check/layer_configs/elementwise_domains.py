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
* ``(1, inf)`` (``arccosh``): ``m(x) = 1.001 + softplus(x)``;
* ``(-1, inf)`` (``log1p``): ``m(x) = -0.999 + softplus(x)``.

A call of several inputs gets one such map per input (:func:`each_input`): ``power`` of two
drawn tensors takes its base above ``1e-3`` (a negative base with a non-integer exponent is
NaN) and its exponent inside ``(-3, 3)`` (so that ``base ** exponent`` stays far from float32's
overflow for the magnitudes the checker draws); ``mod`` and ``fmod`` of two drawn tensors take
their divisor at least ``0.5`` away from 0, of either sign (next to a divisor ``d`` the
quotient crosses an integer every ``d^2 / |x1|`` along ``d``: a divisor of ``1e-7`` leaves no
interval smooth enough to take finite differences on, even in float64).

Each map is monotone in each coordinate, so locally invertible: it hides no error of the
rule. The drawn values near 0 land in the middle of the domain, and the drawn large magnitudes
(negative ones for ``softplus``, either sign for ``softsign``) land next to the domain's edge,
where the derivative is largest and a rule that divides by the wrong power shows most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from hypothesis import strategies as st
from keras import ops

from jacverify.check.adapters import Packing
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


def above_minus_one(shape: tuple) -> DomainMap:
    """The map onto ``(-1, inf)`` (``log1p``): ``-0.999 + softplus(x)``."""
    return domain_map(
        shape, above(MARGIN - 1.0),
        f"{MARGIN - 1.0} + softplus(x): above -1, down to {MARGIN - 1.0}",
    )


#: How far the divisor of ``mod`` and ``fmod`` of two drawn tensors stays from 0.
DIVISOR_MARGIN = 0.5
#: The bound of the exponent of ``power`` of two drawn tensors.
EXPONENT_BOUND = 3.0


def positive_base(shapes: Sequence[tuple]) -> DomainMap:
    """``power(base, exponent)`` of two drawn tensors: base ``1e-3 + softplus(x)``, exponent
    ``3 softsign(y)``."""
    return each_input(
        shapes, [above(MARGIN), bounded(EXPONENT_BOUND)],
        f"base {MARGIN} + softplus(x): positive; exponent {EXPONENT_BOUND} softsign(y): "
        f"inside (-{EXPONENT_BOUND}, {EXPONENT_BOUND})",
    )


def divisor_apart(shapes: Sequence[tuple], negative: bool) -> DomainMap:
    """``mod``/``fmod`` of two drawn tensors: the divisor ``0.5 + softplus(y)`` (or its
    negative), the dividend as drawn."""
    sign, f = ("-", below(-DIVISOR_MARGIN)) if negative else ("", above(DIVISOR_MARGIN))
    return each_input(
        shapes, [None, f],
        f"divisor {sign}({DIVISOR_MARGIN} + softplus(y)): at least {DIVISOR_MARGIN} from 0",
    )


def inside_unit_interval(shape: tuple) -> DomainMap:
    """The map onto ``(-1, 1)``: ``0.999 tanh(x)``."""
    return domain_map(
        shape, lambda x: ops.multiply(ops.softsign(x), 1.0 - MARGIN),
        f"{1.0 - MARGIN} softsign(x): inside (-1, 1), up to {MARGIN} from either end",
    )


def each_input(
    shapes: Sequence[tuple], functions: Sequence[Callable | None], description: str
) -> DomainMap:
    """The map of a call's several drawn inputs (packed as the checker packs them, see
    :class:`jacverify.check.adapters.Packing`) that applies the elementwise ``functions[i]``
    (written with ``keras.ops``; ``None``: the identity) to input ``i``'s coordinates:
    ``sum_i mask_i * f_i(x)``, with constant 0/1 masks of the packed shape. Each ``f_i``
    increasing keeps the map locally invertible."""
    packing = Packing(tuple(tuple(int(d) for d in s) for s in shapes))
    masks = [
        packing.join_array([
            np.full((1, *shape), float(i == k), dtype="float32")
            for k, shape in enumerate(packing.shapes)
        ])[0]
        for i in range(len(packing.shapes))
    ]

    def mapped(x):
        parts = [
            ops.multiply(x if f is None else f(x), ops.cast(mask, x.dtype))
            for f, mask in zip(functions, masks, strict=True)
        ]
        total = parts[0]
        for part in parts[1:]:
            total = ops.add(total, part)
        return total

    return domain_map(packing.shape, mapped, description)


def below(high: float) -> Callable:
    """``high - softplus(x)``: decreasing, below ``high``."""
    return lambda x: ops.subtract(high, ops.softplus(x))


def bounded(limit: float) -> Callable:
    """``limit softsign(x)``: increasing, inside ``(-limit, limit)``."""
    return lambda x: ops.multiply(ops.softsign(x), limit)


def above(low: float) -> Callable:
    """``low + softplus(x)``: increasing, above ``low``."""
    return lambda x: ops.add(ops.softplus(x), low)


@layer_strategy
def inside(draw, cls: type, make_domain: Callable[[tuple], DomainMap]):
    """``cls()`` on an input of rank 1 to 3 (batch excluded), checked inside the domain
    ``make_domain(shape)`` maps onto."""
    shape = draw(sizes(draw(st.integers(1, 3)), budget=24, high=4))
    return packed(cls(), shape, domain=make_domain(shape))


def strategy(cls: type, make_domain: Callable[[tuple], DomainMap]) -> Callable:
    """The registry's factory of :func:`inside` configurations of ``cls``."""
    return lambda: inside(cls, make_domain)
