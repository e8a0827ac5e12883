"""Saliency equals torch autograd; integrated gradients are complete (and say how complete)
and exact on linear models; SmoothGrad averages saliencies at noisy inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

from jacverify.analysis import Attributions, integrated_gradients, saliency, smoothgrad
from tests.analysis.models import autograd_input_gradient, cnn, linear, mlp, relative_error

RNG = np.random.default_rng(1)


def _selected(target):
    return lambda output: output[torch.arange(len(target)), torch.as_tensor(target)]


@pytest.mark.parametrize("make", [mlp, cnn], ids=["mlp", "cnn"])
def test_saliency_equals_autograd_for_default_and_given_targets(make):
    model = make()
    shape = tuple(model.inputs[0].shape[1:])
    x = RNG.standard_normal((5, *shape)).astype("float32")
    argmax = np.argmax(keras.ops.convert_to_numpy(model(x)), axis=-1)
    expected = autograd_input_gradient(model, x, _selected(argmax))
    assert relative_error(saliency(model, x), expected) < 1e-4
    target = np.array([0, 1, 2, 0, 1])
    expected = autograd_input_gradient(model, x, _selected(target))
    assert relative_error(saliency(model, x, target=target), expected) < 1e-4
    expected = autograd_input_gradient(model, x, lambda out: out[:, 2])
    assert relative_error(saliency(model, x, target=2), expected) < 1e-4


def test_saliency_of_a_one_unit_model_needs_no_target():
    model = mlp(units=1, last="sigmoid")
    x = RNG.standard_normal((4, 6)).astype("float32")
    expected = autograd_input_gradient(model, x, lambda out: out[:, 0])
    assert relative_error(saliency(model, x), expected) < 1e-4


def _output(model, x, target):
    return keras.ops.convert_to_numpy(model(x))[np.arange(len(x)), target].astype(np.float64)


def test_integrated_gradients_are_complete_at_64_steps_and_report_it():
    model = mlp(units=3)
    x = RNG.standard_normal((6, 6)).astype("float32")
    baseline = RNG.standard_normal(6).astype("float32") * 0.1
    result = integrated_gradients(model, x, baseline=baseline, steps=64)
    assert isinstance(result, Attributions) and result.shape == x.shape
    difference = _output(model, x, result.target) - _output(
        model, np.broadcast_to(baseline, x.shape), result.target
    )
    error = np.abs(result.reshape(6, -1).sum(axis=1) - difference) / np.abs(difference)
    assert np.all(error < 0.02)
    assert np.all(result.completeness_error < 1e-4)  # float32 rounding at 64 nodes
    np.testing.assert_allclose(result.output_difference, difference, rtol=1e-5, atol=1e-6)
    # One node on a long path: a large error, reported as computed independently.
    far = x * 4.0
    coarse = integrated_gradients(model, far, baseline=baseline, steps=1)
    difference = _output(model, far, coarse.target) - _output(
        model, np.broadcast_to(baseline, x.shape), coarse.target
    )
    error = np.abs(coarse.reshape(6, -1).sum(axis=1) - difference) / np.abs(difference)
    assert error.max() > 0.05
    np.testing.assert_allclose(coarse.completeness_error, error, rtol=1e-3, atol=1e-6)


def test_integrated_gradients_of_a_linear_map_are_input_times_weights():
    matrix = RNG.standard_normal((6, 3))
    model = linear(matrix)
    x = RNG.standard_normal((4, 6)).astype("float32")
    result = integrated_gradients(model, x, target=1, steps=3)
    np.testing.assert_allclose(result, x * matrix[:, 1].astype("float32"), rtol=1e-5, atol=1e-6)
    assert np.all(result.completeness_error < 1e-5)


def test_smoothgrad_averages_saliencies_and_is_reproducible():
    matrix = RNG.standard_normal((6, 3))
    x = RNG.standard_normal((4, 6)).astype("float32")
    # A linear map has the same gradient everywhere: SmoothGrad is its weights.
    result = smoothgrad(linear(matrix), x, target=0, samples=4, seed=0)
    np.testing.assert_allclose(result, np.tile(matrix[:, 0], (4, 1)), rtol=1e-5, atol=1e-6)
    model = mlp(units=3)
    first = smoothgrad(model, x, noise=0.2, samples=8, seed=3)
    np.testing.assert_array_equal(first, smoothgrad(model, x, noise=0.2, samples=8, seed=3))
    assert not np.allclose(first, saliency(model, x), atol=1e-6)
    # The average of the saliencies at the noisy inputs SmoothGrad draws (same seed).
    rng = np.random.default_rng(3)
    spread = (x.max(axis=1) - x.min(axis=1))[:, None]
    target = np.argmax(keras.ops.convert_to_numpy(model(x)), axis=-1)
    expected = np.mean([
        autograd_input_gradient(
            model, (x + 0.2 * spread * rng.standard_normal(x.shape)).astype("float32"),
            _selected(target),
        )
        for _ in range(8)
    ], axis=0)
    assert relative_error(first, expected) < 1e-4
