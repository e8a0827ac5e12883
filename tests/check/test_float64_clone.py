"""The checker's float64 clone of a layer computes in float64 throughout, inner layers (an
RNN's cells, a wrapper's layer, an activation given as a layer) included, whether the layer
was made here or arrived as a worker receives it (pickled by Keras)."""

import pickle

import keras
import numpy as np
import pytest
from keras import layers as L

from jacverify.check.references import clone_layer, config_in_dtype, true_float64


def _wrappers():
    return [
        ("rnn over a stack of cells", L.RNN([L.LSTMCell(2), L.GRUCell(1)],
                                             return_sequences=True), (3, 2)),
        ("rnn over one cell", L.RNN(L.SimpleRNNCell(2), return_state=True), (3, 2)),
        ("bidirectional", L.Bidirectional(L.GRU(2, return_sequences=True)), (3, 2)),
        ("time distributed", L.TimeDistributed(L.Dense(2, activation="tanh")), (3, 2)),
        ("activation given as a layer", L.Dense(3, activation=L.ELU()), (4,)),
    ]


def _built(layer, shape):
    layer(np.zeros((1, *shape), dtype="float32"))
    return layer


def _output(layer, x):
    out = layer(x)
    out = keras.tree.flatten(out)
    return np.concatenate([np.asarray(keras.ops.convert_to_numpy(o)).reshape(-1) for o in out])


def _quotients(clone, x, d, steps):
    """Difference quotients of the clone's output along ``d`` at the given steps."""
    with true_float64():
        base = _output(clone, x)
        return [(_output(clone, x + h * d) - base) / h for h in steps]


@pytest.mark.parametrize("travelled", [False, True], ids=["made here", "pickled"])
@pytest.mark.parametrize("name,layer,shape", _wrappers(), ids=[w[0] for w in _wrappers()])
def test_the_float64_clone_resolves_steps_float32_cannot(name, layer, shape, travelled):
    layer = _built(layer, shape)
    if travelled:
        layer = pickle.loads(pickle.dumps(layer))
    clone = clone_layer(layer, "float64", shape)
    assert {str(w.dtype) for w in clone.weights} == {"float64"}
    for source, copied in zip(layer.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(copied, source.astype("float64"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *shape))
    d = rng.standard_normal((1, *shape))
    # A step of 1e-9 is far below float32's resolution at these values (about 1e-7): a clone
    # rounding anywhere to float32 sees no change, or noise, where float64 sees the derivative.
    tiny, small = _quotients(clone, x, d, (1e-9, 1e-5))
    assert np.linalg.norm(small) > 1e-3
    np.testing.assert_allclose(tiny, small, rtol=1e-3, atol=1e-4 * np.linalg.norm(small))


def test_config_in_dtype_moves_floating_dtypes_only():
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None}
    config = {"dtype": "int32", "units": 2, "cell": {"config": {"dtype": policy}},
              "cells": [{"dtype": "bfloat16"}, {"dtype": "int64"}, {"dtype": "string"}]}
    moved = config_in_dtype(config, "float64")
    assert moved == {"dtype": "float64", "units": 2, "cell": {"config": {"dtype": "float64"}},
                     "cells": [{"dtype": "float64"}, {"dtype": "int64"}, {"dtype": "string"}]}
    assert config["cell"]["config"]["dtype"] is policy  # the layer's own config is untouched
