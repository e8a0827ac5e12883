"""FGSM and PGD stay inside their ball (and the data range), raise the loss, PGD at least as
much as FGSM; FGSM's step is the sign of the autograd loss gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

from jacverify.analysis import fgsm, pgd
from jacverify.analysis.attacks import example_losses
from tests.analysis.models import autograd_input_gradient, mlp

N = 16


@pytest.fixture
def setting():
    model = mlp(units=3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, 6)).astype("float32")
    y = rng.integers(0, 3, N)
    return model, x, y


def _inside(adversarial, x, eps, norm):
    delta = np.asarray(adversarial, np.float64) - x
    slack = 1e-6 * (1.0 + np.abs(x).max())
    if norm == "inf":
        return np.abs(delta).max() <= eps + slack
    return np.linalg.norm(delta.reshape(len(x), -1), axis=1).max() <= eps + slack


def test_fgsm_steps_along_the_sign_of_the_autograd_gradient(setting):
    model, x, y = setting
    adversarial = fgsm(model, x, y, eps=0.1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    gradient = autograd_input_gradient(model, x, lambda out: loss(torch.tensor(y), out))
    np.testing.assert_allclose(adversarial, x + 0.1 * np.sign(gradient), atol=1e-6)


@pytest.mark.parametrize("norm,eps", [("inf", 0.1), (2, 0.5)])
def test_attacks_stay_in_the_ball_and_raise_the_loss(setting, norm, eps):
    model, x, y = setting
    clean = example_losses(model, x, y)
    strong = pgd(model, x, y, eps=eps, steps=20, norm=norm, seed=0)
    assert strong.shape == x.shape and strong.dtype == x.dtype
    assert _inside(strong, x, eps, norm)
    attacked = example_losses(model, strong, y)
    assert np.all(attacked >= clean - 1e-6) and attacked.mean() > clean.mean()
    if norm == "inf":
        quick = fgsm(model, x, y, eps=eps)
        assert _inside(quick, x, eps, "inf")
        fast = example_losses(model, quick, y)
        assert fast.mean() > clean.mean()
        assert attacked.mean() >= fast.mean()
        assert np.all(attacked >= fast - 1e-3 * np.abs(fast))


def test_pgd_respects_the_data_range_and_is_reproducible(setting):
    model, x, y = setting
    x = np.clip(x, -1.0, 1.0)
    first = pgd(model, x, y, eps=0.3, clip=(-1.0, 1.0), seed=5)
    assert first.min() >= -1.0 and first.max() <= 1.0 and _inside(first, x, 0.3, "inf")
    np.testing.assert_array_equal(first, pgd(model, x, y, eps=0.3, clip=(-1.0, 1.0), seed=5))


def test_attacks_with_a_given_loss_and_one_hot_labels(setting):
    model, x, y = setting
    onehot = np.eye(3, dtype="float32")[y]
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    clean = example_losses(model, x, onehot, loss=loss)
    attacked = example_losses(model, pgd(model, x, onehot, eps=0.1, loss=loss, seed=0),
                              onehot, loss=loss)
    assert attacked.mean() > clean.mean()
    np.testing.assert_allclose(clean, example_losses(model, x, y), rtol=1e-5)


def test_pgd_returns_the_point_of_highest_loss_it_met():
    # f(x) = -|x| and MSE to -10: the loss (10 - |x|)^2 is highest at x = 0. From x = 0.3 with
    # eps = 1 (the ball [-0.7, 1.3]) the one-step attack lands on -0.7, and a step of 1 from a
    # random start s overshoots 0 to s - sign(s) (worse than s when |s| < 1/2). The result is
    # the point nearest 0 among the one-step point, the start and the last point.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2, use_bias=False),
                              keras.layers.ReLU(), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([np.array([[1.0, -1.0]], dtype="float32")])
    model.layers[2].set_weights([np.array([[-1.0], [-1.0]], dtype="float32")])
    x = np.full((N, 1), 0.3, dtype="float32")
    y = np.full((N, 1), -10.0, dtype="float32")
    result = pgd(model, x, y, eps=1.0, steps=1, step_size=1.0, loss="mse", seed=4)[:, 0]
    start = 0.3 + np.random.default_rng(4).uniform(-1.0, 1.0, size=N)
    last = np.clip(start - np.sign(start), -0.7, 1.3)
    assert np.any(np.abs(start) < 0.5) and np.any(np.abs(start) > 0.7)
    expected = np.minimum(0.7, np.minimum(np.abs(start), np.abs(last)))
    np.testing.assert_allclose(np.abs(result), expected, atol=1e-5)
    assert np.any(np.abs(result) < np.abs(last) - 0.1)  # the start kept over the overshoot
