"""Shared driver of the ``keras.ops`` rule tests: each case is a functional graph of
``keras.ops`` calls, checked against torch autograd of the same model in float32 and float64,
with extra Jacobian axes."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tests.backward.model_reference import assert_model_matches_autograd, functional


def model_of(case, dtype: str):
    """The functional model of ``case = (fn, shapes[, input_dtypes[, make_inputs]])`` in
    ``dtype`` (``make_inputs(rng, shapes_with_batch)``: the inputs to check at)."""
    fn, shapes, *rest = case
    input_dtypes = rest[0] if rest else None
    if input_dtypes is not None:
        input_dtypes = [dtype if d == "float" else d for d in input_dtypes]
    if dtype == "float64":
        # Keras' symbolic dtype inference may declare float32 where torch computes float64.
        return functional(lambda *xs: ops.cast(fn(*xs), "float64"), shapes, dtype=dtype,
                          input_dtypes=input_dtypes)
    return functional(fn, shapes, dtype=dtype, input_dtypes=input_dtypes)


def inputs_of(model, seed: int = 0, transform=None):
    """Random inputs of ``model`` (standard normal floats, integers in [0, 2))."""
    from tests.backward.model_reference import random_inputs

    xs = random_inputs(model, seed=seed)
    return [transform(x) if transform and "float" in str(x.dtype) else x for x in xs]


def check_case(case, dtype: str, save_to=None, keras_float32_inside: bool = False,
               **tolerances):
    """The backward model of the case equals torch autograd (float64: tight tolerances, unless
    ``keras_float32_inside``: Keras' own float64 forward rounds through float32 there, so
    autograd of it, the reference, is only float32-precise)."""
    model = model_of(case, dtype)
    xs = None
    if len(case) > 3 and case[3] is not None:
        rng = np.random.default_rng(0)
        xs = [np.asarray(x).astype(t.dtype) for x, t in zip(
            case[3](rng, [(3, *t.shape[1:]) for t in model.inputs]), model.inputs, strict=True)]
    if dtype == "float64":
        tight = {"rtol": 1e-5, "atol": 1e-6} if keras_float32_inside else {
            "rtol": 1e-9, "atol": 1e-11}
        tolerances = {**tight, **tolerances}
    backward = assert_model_matches_autograd(model, xs, save_to=save_to, **tolerances)
    if dtype == "float64":
        xs = inputs_of(model) if xs is None else xs
        outs = model(xs if len(xs) > 1 else xs[0])
        g = np.ones(tuple(outs.shape), dtype="float64")
        results = backward(xs + [g])
        results = results if isinstance(results, (list, tuple)) else [results]
        for x, result in zip(xs, results, strict=True):
            if "float" in str(x.dtype):
                assert keras.ops.convert_to_numpy(result).dtype == np.float64
    return backward
