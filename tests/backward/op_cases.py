"""Shared harness of the ``keras.ops`` rule tests: one functional model per case, checked
against torch autograd of the same model in float32 and float64, with extra Jacobian axes.

A case is ``(function of the Keras inputs, per-example input shapes, input domain)``; the
domain maps standard normal draws into where the function is defined and smooth:
``"real"`` (as drawn), ``"positive"`` (``|x| + 0.1``), ``"unit"`` (``0.9 tanh(x)``),
``"above_one"`` (``|x| + 1.5``), ``"nonzero"`` (``x`` pushed away from 0).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from tests.backward.model_reference import assert_model_matches_autograd, functional

DOMAINS = {
    "real": lambda x: x,
    "positive": lambda x: np.abs(x) + 0.1,
    "unit": lambda x: 0.9 * np.tanh(x),
    "above_one": lambda x: np.abs(x) + 1.5,
    "nonzero": lambda x: np.where(x >= 0, x + 0.3, x - 0.3),
}
#: Tolerances per dtype: float64 rules must be float64-precise.
TOLERANCES = {"float32": {"rtol": 1e-4, "atol": 1e-5},
              "float64": {"rtol": 1e-9, "atol": 1e-10}}


def inputs_for(shapes, dtype, domain="real", batch=3, seed=0):
    """Random inputs of ``shapes`` (batch first) mapped into ``domain`` (one per input, or
    one for all)."""
    rng = np.random.default_rng(seed)
    domains = domain if isinstance(domain, (list, tuple)) else [domain] * len(shapes)
    return [DOMAINS[d](rng.standard_normal((batch, *s))).astype(dtype)
            for s, d in zip(shapes, domains, strict=True)]


def check_case(case, dtype, *, batch=3, save_to=None, mapping=None, extra_axes=(2,),
               tolerances=None):
    """The backward model of the case's model equals torch autograd (see
    :func:`assert_model_matches_autograd`); the output is cast to ``dtype`` so that Keras's
    symbolic dtype inference keeps float64 models float64 to the end."""
    fn, shapes, domain = case if len(case) == 3 else (*case, "real")
    model = functional(lambda *xs: ops.cast(fn(*xs), dtype), shapes, dtype=dtype)
    xs = inputs_for(shapes, dtype, domain, batch=batch)
    return assert_model_matches_autograd(model, xs, mapping=mapping, save_to=save_to,
                                         extra_axes=extra_axes,
                                         **(tolerances or TOLERANCES[dtype]))
