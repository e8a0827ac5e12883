"""Calibration sweeps (slow): no false alarm on correct native rules, every planted bug caught,
over several seeds. Run with ``pytest -m slow tests/check``."""

from __future__ import annotations

import keras
import pytest

from jacverify.backward.registry import MissingBackwardRuleError, get_backward_rule
from jacverify.check import check_layer
from tests.check.tutorial_layers import (
    BackwardClip,
    BackwardClipCorrect,
    BackwardClipThinBand,
    BackwardClipWrongAtVmax,
    BatchMixingRule,
    Clip,
    DenseTransposedRule,
    NaNRule,
    ScaledReLURule,
    SignFlippedReLURule,
)

L = keras.layers
SEEDS = range(4)

CORRECT = {
    "dense_relu": (lambda: L.Dense(3, activation="relu"), (5,)),
    "dense16_relu": (lambda: L.Dense(16, activation="relu"), (10,)),
    "dense_tanh_wide": (lambda: L.Dense(8, activation="tanh"), (100,)),
    "relu": (lambda: L.ReLU(), (6,)),
    "relu6": (lambda: L.ReLU(max_value=6.0), (6,)),
    "relu_threshold": (lambda: L.ReLU(threshold=1.0), (6,)),
    "leaky_relu": (lambda: L.LeakyReLU(), (6,)),
    "tanh": (lambda: L.Activation("tanh"), (6,)),
    "softplus": (lambda: L.Activation("softplus"), (6,)),
    "sigmoid": (lambda: L.Activation("sigmoid"), (6,)),
    "softmax": (lambda: L.Softmax(), (5,)),
    "max_pool": (lambda: L.MaxPooling2D(2), (4, 4, 2)),
    "global_max_pool": (lambda: L.GlobalMaxPooling1D(), (4, 3)),
    "conv_relu": (lambda: L.Conv2D(4, 3, activation="relu"), (6, 6, 3)),
    "batch_norm": (lambda: L.BatchNormalization(), (6,)),
}

WRONG = {
    "tutorial_clip": (lambda: Clip(0, 2), BackwardClip, (5,), "fail"),
    "clip_at_vmax": (lambda: Clip(0, 2), BackwardClipWrongAtVmax, (5,), "boundary"),
    "clip_at_vmax_wide": (lambda: Clip(-1, 3), BackwardClipWrongAtVmax, (100,), "boundary"),
    "clip_thin_band": (lambda: Clip(0, 2), BackwardClipThinBand, (5,), "boundary"),
    "sign_flip": (lambda: L.ReLU(), SignFlippedReLURule, (6,), "fail"),
    "scale_1e-3": (lambda: L.ReLU(), ScaledReLURule, (6,), "fail"),
    "scale_1e-3_wide": (lambda: L.ReLU(), ScaledReLURule, (200,), "fail"),
    "batch_mixing": (lambda: L.ReLU(), BatchMixingRule, (6,), "fail"),
    "untransposed": (lambda: L.Dense(4), DenseTransposedRule, (4,), "fail"),
    "nan": (lambda: L.ReLU(), NaNRule, (6,), "error"),
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_no_false_alarm(name, seed):
    make, shape = CORRECT[name]
    layer = make()
    try:
        get_backward_rule(layer)
    except MissingBackwardRuleError:
        pytest.skip(f"no rule registered for {type(layer).__name__}")
    check = check_layer(layer, input_shape=shape, seed=seed, examples=100)
    assert check.verdict == "pass", check.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_correct_clip_under_both_conventions(seed):
    for convention in ("subgradient", "autograd"):
        check = check_layer(Clip(0, 2), BackwardClipCorrect, input_shape=(5,), seed=seed,
                            convention=convention)
        assert check.verdict == "pass", check.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(WRONG))
def test_planted_bug_is_caught(name, seed):
    make, rule, shape, expected = WRONG[name]
    check = check_layer(make(), rule, input_shape=shape, seed=seed, examples=100)
    assert check.verdict == expected, check.summary()
