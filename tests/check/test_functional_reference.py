"""A functional model's float64 reference runs its graph with direct calls of its layers, and a
model check gives the same results as through Keras' own calls, serially and in workers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from keras import layers as L

from jacverify import check_model
from jacverify.backward.runner import direct_calls
from jacverify.check.adapters import PackedCall
from jacverify.check.references import true_float64


def _without_timings(data):
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items() if k != "duration_s"}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


def _squeeze_excite(name: str = "se_block") -> keras.Model:
    """The blocks of EfficientNet and MobileNetV3 in small: convolution with swish, batch
    normalization, depthwise convolution, squeeze and excitation, a residual sum, pooling and a
    softmax head."""
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", activation="swish")(x)
    h = L.BatchNormalization()(h)
    d = L.DepthwiseConv2D(3, padding="same")(h)
    s = L.GlobalAveragePooling2D(keepdims=True)(d)
    s = L.Conv2D(4, 1, activation="sigmoid")(s)
    h = L.Add()([L.Multiply()([d, s]), h])
    h = L.Activation("relu")(h)
    h = L.Flatten()(L.MaxPooling2D()(h))
    return keras.Model(x, L.Dense(3, activation="softmax")(h), name=name)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    model = _squeeze_excite()
    bn = model.layers[2]
    gamma, beta, mean, variance = bn.get_weights()
    rng = np.random.default_rng(0)
    bn.set_weights([gamma + rng.uniform(0, 1, 4), beta + 0.1, mean + 0.2,
                    variance + rng.uniform(0, 1, 4)])
    return model


def test_the_float64_reference_of_a_functional_model_runs_its_graph_directly(model):
    clone = PackedCall(model, [(8, 8, 3)]).clone_to_dtype("float64")
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((5, 8, 8, 3)))
    with torch.no_grad(), true_float64():
        direct = clone.call_operation_directly(x)
        assert "_jacverify_runner" in clone.operation.__dict__  # the graph runner ran it
        through_keras = clone(x)
        with direct_calls(False):
            keras_path = clone.call_operation_directly(x)
    assert direct.dtype == torch.float64
    assert torch.equal(direct, through_keras) and torch.equal(direct, keras_path)


def test_a_model_check_gives_the_same_results_through_keras_calls(model):
    """Same verdicts, errors, tolerances and kink counts whether the references run the
    model's graph directly or through Keras' ``__call__`` of every layer."""
    kwargs = dict(examples=4, seed=3)
    direct = check_model(model, **kwargs)
    with direct_calls(False):
        keras_path = check_model(model, **kwargs)
    assert direct.verdict == "pass" and direct.end_to_end.verdict == "pass"
    assert _without_timings(direct.to_dict()) == _without_timings(keras_path.to_dict())


@pytest.mark.slow
def test_a_small_applications_model_passes_alike_serially_and_with_two_jobs():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, minimalistic=True, weights=None,
        include_preprocessing=False)
    serial = check_model(model, examples=3, seed=0)
    shared = check_model(model, examples=3, seed=0, jobs=2)
    assert {c.verdict for c in serial.layers} <= {"pass", "skipped"}
    assert serial.end_to_end.verdict == "pass"
    assert _without_timings(shared.to_dict()) == _without_timings(serial.to_dict())
