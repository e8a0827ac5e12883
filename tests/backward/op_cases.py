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


def check_rule_float64(operation, torch_fn, shapes, *, args=None, kwargs=None, domain="real",
                       batch=3, rtol=1e-10, atol=1e-12):
    """The registered rule of ``operation`` (called as ``operation(*args, **kwargs)``, the
    inputs as ``{"__input__": i}``), run on float64 tensors, equals torch autograd of
    ``torch_fn`` (the same function written in torch) in float64.

    For the operations Keras computes in float32 on float64 tensors (its type promotion maps
    64-bit dtypes to 32-bit: ``cumsum``, ``prod``, ``var``, binary functions...): the model's
    own autograd is then only float32-precise, and this checks the rule's precision."""
    import torch

    from jacverify.backward.registry import get_backward_rule

    xs = inputs_for(shapes, "float64", domain, batch=batch)
    placeholders = [{"__input__": i} for i in range(len(shapes))]
    call = {"args": list(placeholders if args is None else args), "kwargs": dict(kwargs or {})}
    tensors = [torch.tensor(x, requires_grad=True) for x in xs]
    out = torch_fn(*tensors)
    g = np.random.default_rng(1).standard_normal(tuple(out.shape))
    expected = torch.autograd.grad(out, tensors, torch.tensor(g), allow_unused=True)
    dims = [list(s) for s in shapes]
    rule = get_backward_rule(operation)(
        layer=operation, input_dim_wo_batch=dims if len(dims) > 1 else dims[0],
        output_dim_wo_batch=list(out.shape[1:]), call_arguments=call, dtype="float64")
    inputs = [torch.tensor(x) for x in xs]
    got = rule([torch.tensor(g), inputs if len(inputs) > 1 else inputs[0]])
    got = got if isinstance(got, (list, tuple)) else [got]
    for i, (a, e) in enumerate(zip(got, expected, strict=True)):
        a = ops.convert_to_numpy(a)
        assert a.dtype == np.float64, f"input {i}: the rule computed in {a.dtype}"
        e = np.zeros_like(xs[i]) if e is None else e.numpy()
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * max(1.0, np.abs(e).max()),
                                   err_msg=f"input {i}")
