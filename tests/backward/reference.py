"""Independent references for testing backward rules: torch autograd of the forward call."""

from __future__ import annotations

import keras
import numpy as np
import torch

from jacverify.backward.registry import get_backward_rule


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _shape_wo_batch(a):
    return list(np.shape(a)[1:])


def autograd_vjp(layer, x, g):
    """``g^T J(x)`` of ``layer`` at ``x`` by torch autograd (list of arrays, one per input)."""
    xs = [torch.tensor(np.asarray(a), requires_grad=True) for a in _as_list(x)]
    y = layer(xs if isinstance(x, (list, tuple)) else xs[0])
    grads = torch.autograd.grad(y, xs, torch.tensor(np.asarray(g), dtype=y.dtype),
                                allow_unused=True)
    return [np.zeros_like(a.detach().numpy()) if gr is None else gr.detach().numpy()
            for a, gr in zip(xs, grads)]


def make_rule(layer, x, rule_class=None):
    """Instantiate the rule for ``layer`` called on ``x`` (the registered one by default)."""
    rule_class = rule_class or get_backward_rule(layer)
    y = layer(x)
    in_dims = [_shape_wo_batch(a) for a in _as_list(x)]
    return rule_class(
        layer=layer,
        input_dim_wo_batch=in_dims if isinstance(x, (list, tuple)) else in_dims[0],
        output_dim_wo_batch=_shape_wo_batch(keras.ops.convert_to_numpy(y)),
    )


def rule_vjp(rule, x, g):
    """The rule's ``g^T J(x)`` (list of arrays, one per input)."""
    out = rule([g, x])
    return [keras.ops.convert_to_numpy(o) for o in _as_list(out)]


def assert_rule_matches_autograd(layer, x, *, rule_class=None, seed=0, rtol=1e-4,
                                 atol=1e-5, extra_axes=(3,)):
    """Compare the rule of ``layer`` with torch autograd at ``x``, for a random upstream
    gradient, and again with extra Jacobian axes on the gradient (each row checked)."""
    rng = np.random.default_rng(seed)
    y = keras.ops.convert_to_numpy(layer(x))
    dtype = y.dtype
    g = rng.standard_normal(y.shape).astype(dtype)
    rule = make_rule(layer, x, rule_class)
    expected = autograd_vjp(layer, x, g)
    got = rule_vjp(rule, x, g)
    assert len(got) == len(expected), f"{len(got)} gradients for {len(expected)} inputs"
    for i, (a, e) in enumerate(zip(got, expected)):
        assert a.shape == e.shape, f"input {i}: rule gives shape {a.shape}, expected {e.shape}"
        scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale,
                                   err_msg=f"{type(layer).__name__} input {i}")
    if extra_axes:
        # Several upstream gradients per example: shape (batch, *extra_axes, *out).
        batch = y.shape[0]
        gs = rng.standard_normal((batch, *extra_axes, *y.shape[1:])).astype(dtype)
        got = rule_vjp(rule, x, gs)
        flat = gs.reshape(batch, -1, *y.shape[1:])
        for k in range(flat.shape[1]):
            expected = autograd_vjp(layer, x, flat[:, k])
            for i, (a, e) in enumerate(zip(got, expected)):
                a_k = a.reshape(batch, -1, *e.shape[1:])[:, k]
                scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
                np.testing.assert_allclose(a_k, e, rtol=rtol, atol=atol * scale,
                                           err_msg=f"{type(layer).__name__} input {i}, row {k}")


def model_autograd_vjp(model, xs, gs):
    """Gradients of ``sum(g * model(x))`` with respect to each model input, by torch autograd."""
    xs_t = [torch.tensor(np.asarray(a), requires_grad=True) for a in _as_list(xs)]
    ys = model(xs_t if isinstance(xs, (list, tuple)) else xs_t[0])
    ys = _as_list(ys)
    grads = torch.autograd.grad(
        ys, xs_t, [torch.tensor(np.asarray(g), dtype=y.dtype) for g, y in zip(_as_list(gs), ys)],
        allow_unused=True,
    )
    return [np.zeros_like(a.detach().numpy()) if gr is None else gr.detach().numpy()
            for a, gr in zip(xs_t, grads)]
