"""An autograd reference for operations whose torch derivative is wrong or missing.

torch autograd of an operation's own forward is one of the checker's two references. For a
few operations it is not a reference at all, and the checker then reports every example as
"references disagree":

* ``ldexp(x, e)``: torch's derivative multiplies by ``2 ** e`` computed in integers, so it is 0
  for every negative exponent (``ldexp(1.5, -1)``: autograd 0, the derivative 0.5);
* ``nextafter(x1, x2)``: torch's derivative is 0 for both inputs where ``x1 == x2`` (the
  checker draws such ties on purpose), while the function is ``x1`` up to one ulp on either
  side of the tie, of derivative 1 in ``x1``;
* ``det``: torch's derivative is 0 at an exactly singular matrix, where the adjugate (the
  derivative) is not 0 when the rank is ``n - 1`` (``det([[1, 2], [2, 4]])``: autograd 0, the
  derivative ``[[4, -2], [-2, 1]]``).

A configuration of such an operation names an :class:`AutogradForward`: a differentiable
forward written with other ``keras.ops``, equal to the operation (up to rounding) everywhere,
which autograd differentiates in place of the operation's own. It is checked at every point
it is used: where it does not give the operation's value (within ``ulps`` units of rounding
of the value's scale), autograd is reported unavailable there, so a wrong replacement can
never make a wrong rule pass. Finite differences still run on the operation's own forward,
and the verdict names the replacement (``autograd of x1 * 2 ** x2``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from keras import ops

from jacverify.check.references import ReferenceUnavailable


@dataclass(frozen=True)
class AutogradForward:
    """A differentiable forward equal to an operation's, for torch autograd to differentiate.

    Args:
        function: called with the operation's own arguments (inputs filled in), returns its
            output, written with differentiable ``keras.ops``.
        description: what it computes, for reports (``"x1 * 2 ** x2"``).
        scale: called like ``function``, the magnitude against which the two forwards'
            rounding is measured (default: the value's own magnitude).
        ulps: how many units of rounding (machine epsilon of the dtype, times ``scale``) the
            two forwards may differ by.
    """

    function: Callable[..., Any]
    description: str
    scale: Callable[..., Any] | None = None
    ulps: float = 8.0

    def differentiable_output(self, own: Any, args: list, kwargs: dict) -> Any:
        """``function(*args, **kwargs)`` once it is checked against ``own`` (the operation's
        output on the same arguments). Raises :class:`ReferenceUnavailable` when they differ
        by more than rounding."""
        replaced = self.function(*args, **kwargs)
        with torch.no_grad():
            own_t = ops.convert_to_tensor(own)
            replaced_t = ops.convert_to_tensor(replaced)
            scale = ops.abs(own_t) if self.scale is None else ops.convert_to_tensor(
                self.scale(*args, **kwargs)
            )
            eps = float(np.finfo(np.dtype(str(own_t.dtype).removeprefix("torch."))).eps)
            tiny = float(np.finfo(np.dtype(str(own_t.dtype).removeprefix("torch."))).tiny)
            bound = ops.add(ops.multiply(scale, self.ulps * eps), tiny)
            off = ops.abs(ops.subtract(replaced_t, own_t))
            if tuple(own_t.shape) != tuple(replaced_t.shape) or bool(
                ops.any(ops.logical_not(ops.less_equal(off, bound)))
            ):
                raise ReferenceUnavailable(
                    f"the differentiable forward {self.description} does not equal the "
                    "operation here"
                )
        return replaced


def ldexp_forward() -> AutogradForward:
    """``ldexp(x1, x2) = x1 * 2 ** x2``, in ``x1``'s dtype."""
    def function(x1: Any, x2: Any) -> Any:
        x1 = ops.convert_to_tensor(x1)
        return ops.multiply(x1, ops.power(2.0, ops.cast(x2, x1.dtype)))

    return AutogradForward(function, "x1 * 2 ** x2", ulps=1.0)


def nextafter_forward() -> AutogradForward:
    """``nextafter(x1, x2)``, one ulp from ``x1``, as ``x1`` (broadcast against ``x2``)."""
    def function(x1: Any, x2: Any) -> Any:
        x1 = ops.convert_to_tensor(x1)
        return ops.add(x1, ops.multiply(ops.cast(x2, x1.dtype), 0.0))

    return AutogradForward(function, "x1 + 0 * x2 (nextafter is x1 up to one ulp)", ulps=2.0)


def _leibniz_terms(x: Any) -> list:
    """The signed products ``sign(p) prod_i x[..., i, p(i)]`` over the permutations ``p``."""
    n = int(x.shape[-1])
    terms = []
    for permutation in itertools.permutations(range(n)):
        inversions = sum(
            1 for a, b in itertools.combinations(permutation, 2) if a > b
        )
        product = x[..., 0, permutation[0]]
        for row in range(1, n):
            product = ops.multiply(product, x[..., row, permutation[row]])
        terms.append(product if inversions % 2 == 0 else ops.negative(product))
    return terms


def det_forward() -> AutogradForward:
    """``det`` by the Leibniz formula (a sum over permutations: ``n!`` products, for the
    small matrices the checker draws), smooth everywhere; rounding measured against the sum
    of the products' magnitudes."""
    def function(x: Any) -> Any:
        return ops.sum(ops.stack(_leibniz_terms(ops.convert_to_tensor(x)), axis=0), axis=0)

    def scale(x: Any) -> Any:
        terms = _leibniz_terms(ops.convert_to_tensor(x))
        return ops.sum(ops.abs(ops.stack(terms, axis=0)), axis=0)

    return AutogradForward(function, "the Leibniz formula sum_p sign(p) prod_i x[i, p(i)]",
                           scale=scale)
