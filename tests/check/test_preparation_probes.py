"""The set-up of a check probes the checked call once to learn what it returns, and learns the
same output shape as probing it again would."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from jacverify.check import adapters, preparation, references
from jacverify.check.preparation import prepare
from jacverify.check.settings import CheckSettings

L = keras.layers


class _TwoOutputs(L.Layer):
    def call(self, x):
        return x * 2.0, keras.ops.sum(x, axis=-1)


CASES = [
    ("dense", lambda: L.Dense(3), (4,), None, (3,)),
    ("dense float64 clone", lambda: L.Dense(3), (4,), "float64", (3,)),
    ("relu", lambda: L.ReLU(), (2, 3), None, (2, 3)),
    ("add", lambda: L.Add(), [(3,), (3,)], None, (3,)),
    ("two outputs", lambda: _TwoOutputs(), (3,), None, (4,)),
]


@pytest.mark.parametrize("label, make, shape, dtype, output_shape", CASES,
                         ids=[c[0] for c in CASES])
def test_the_checked_call_is_probed_once(monkeypatch, label, make, shape, dtype, output_shape):
    layer = make()
    shapes = shape if isinstance(shape[0], tuple) else [shape]
    inputs = [np.zeros((1, *s), dtype="float32") for s in shapes]
    layer(inputs if len(inputs) > 1 else inputs[0])  # built before the check
    probed: list = []
    original = references.call_on_probe

    def counting(function, shapes, dtype_name):
        probed.append(function)
        return original(function, shapes, dtype_name)

    monkeypatch.setattr(adapters, "call_on_probe", counting)
    monkeypatch.setattr(preparation, "call_on_probe", counting)
    rule = (lambda inputs: inputs[0]) if label == "two outputs" else None  # noqa: E731
    setup = prepare(layer, rule, CheckSettings(seed=0, dtype=dtype), input_shape=shape)
    assert setup.output_shape == output_shape
    # the checked call (the layer, its adapter or its clone) is probed once
    assert sum(f is setup.target for f in probed) == 1
    # and the call it replaces, if any: the call before its dtype clone or its output packing
    replaced = dtype is not None or label == "two outputs"
    assert sum(isinstance(f, (L.Layer, adapters.PackedCall)) for f in probed) == 1 + replaced


def test_the_output_shape_is_what_the_layer_returns():
    layer = L.Conv2D(5, 3, padding="valid")
    setup = prepare(layer, None, CheckSettings(seed=0), input_shape=(6, 7, 2))
    expected = layer(np.zeros((1, 6, 7, 2), dtype="float32")).shape[1:]
    assert setup.output_shape == tuple(expected)
