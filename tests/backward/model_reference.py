"""Whole-model references for rules that only exist inside a graph (``keras.ops`` calls,
layers called with masks or call arguments): the backward model against torch autograd of the
same model, with and without extra Jacobian axes."""

from __future__ import annotations

import keras
import numpy as np
import torch

from jacverify import clone_to_backward


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def model_autograd_vjp(model, xs, gs):
    """Gradients of ``sum(g * model(x))`` with respect to each model input, by torch autograd
    (zeros for integer and boolean inputs)."""
    xs_t = []
    for a in _as_list(xs):
        t = torch.tensor(np.asarray(a))
        xs_t.append(t.requires_grad_(True) if t.is_floating_point() else t)
    ys = _as_list(model(xs_t if isinstance(xs, (list, tuple)) else xs_t[0]))
    leaves = [t for t in xs_t if t.requires_grad]
    grads = torch.autograd.grad(
        ys, leaves,
        [torch.tensor(np.asarray(g), dtype=y.dtype) for g, y in zip(_as_list(gs), ys, strict=True)],
        allow_unused=True,
    )
    by_id = {id(t): g for t, g in zip(leaves, grads, strict=False)}
    result = []
    for t in xs_t:
        g = by_id.get(id(t))
        result.append(np.zeros(t.shape, dtype="float32") if g is None else g.detach().numpy())
    return result


def linear_model_vjp(model, x, g):
    """``g^T J`` of a model linear in its one input, by central differences with unit steps
    along every coordinate (exact up to rounding for a linear model)."""
    steps = np.eye(x.size).reshape(x.size, *x.shape)  # one batch per coordinate
    up = np.asarray(model((x + steps).reshape(-1, *x.shape[1:]))).reshape(x.size, *g.shape)
    down = np.asarray(model((x - steps).reshape(-1, *x.shape[1:]))).reshape(x.size, *g.shape)
    return np.sum(g * (up - down), axis=tuple(range(1, g.ndim + 1))).reshape(x.shape) / 2.0


def functional(fn, shapes, dtype="float32", input_dtypes=None):
    """``keras.Model(inputs, fn(*inputs))`` for inputs of the given per-example shapes."""
    input_dtypes = input_dtypes or [dtype] * len(shapes)
    inputs = [keras.Input(s, dtype=d) for s, d in zip(shapes, input_dtypes, strict=False)]
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], fn(*inputs))


def random_inputs(model, batch=3, seed=0, dtype=None):
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        d = dtype or t.dtype
        shape = (batch, *t.shape[1:])
        if "int" in str(t.dtype) or "bool" in str(t.dtype):
            xs.append(rng.integers(0, 2, shape).astype(t.dtype))
        else:
            xs.append(rng.standard_normal(shape).astype(d))
    return xs


def assert_model_matches_autograd(model, xs=None, *, mapping=None, rtol=1e-4, atol=1e-5,
                                  extra_axes=(2,), seed=1, save_to=None, fallback=None):
    """The backward model of ``model`` equals autograd at ``xs`` for a random gradient; with
    ``extra_axes``, a gradient input with extra axes gives every row; ``save_to`` also saves
    and reloads the backward model. Returns the backward model."""
    xs = random_inputs(model) if xs is None else _as_list(xs)
    rng = np.random.default_rng(seed)
    outs = _as_list(model(xs if len(xs) > 1 else xs[0]))
    gs = [rng.standard_normal(tuple(o.shape)).astype(keras.ops.convert_to_numpy(o).dtype)
          for o in outs]
    kwargs = {"fallback": fallback} if fallback else {}
    backward = clone_to_backward(model, mapping, **kwargs)
    got = _as_list(backward(xs + gs))
    expected = model_autograd_vjp(model, xs if len(xs) > 1 else xs[0], gs)
    _compare(got, expected, xs, rtol, atol, "")
    if save_to is not None:
        backward.save(save_to)
        loaded = keras.saving.load_model(save_to)
        _compare(_as_list(loaded(xs + gs)), expected, xs, rtol, atol, " (reloaded)")
    if extra_axes and len(outs) == 1:
        out = outs[0]
        g_in = keras.Input((*extra_axes, *out.shape[1:]), dtype=str(out.dtype))
        jac_model = clone_to_backward(model, mapping, gradient=g_in, **kwargs)
        batch = out.shape[0]
        gs_extra = rng.standard_normal((batch, *extra_axes, *out.shape[1:])).astype(
            gs[0].dtype)
        got = _as_list(jac_model(xs + [gs_extra]))
        flat = gs_extra.reshape(batch, -1, *out.shape[1:])
        for k in range(flat.shape[1]):
            expected = model_autograd_vjp(model, xs if len(xs) > 1 else xs[0], [flat[:, k]])
            rows = [keras.ops.convert_to_numpy(a).reshape(batch, -1, *e.shape[1:])[:, k]
                    for a, e in zip(got, expected, strict=False)]
            _compare(rows, expected, xs, rtol, atol, f" (row {k})")
    return backward


def _compare(got, expected, xs, rtol, atol, what):
    assert len(got) == len(expected), f"{len(got)} gradients for {len(expected)} inputs"
    for i, (a, e) in enumerate(zip(got, expected, strict=False)):
        a = keras.ops.convert_to_numpy(a)
        if "float" not in str(np.asarray(xs[i]).dtype):
            continue
        assert a.shape == e.shape, f"input {i}{what}: shape {a.shape}, expected {e.shape}"
        scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale,
                                   err_msg=f"input {i}{what}")
