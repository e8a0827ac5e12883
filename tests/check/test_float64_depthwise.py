"""Float64 depthwise convolutions inside checks: the shifted sums equal Keras' own up to
rounding (and a hand computation exactly), they are used only where no gradient is taken and
the configuration agreed with Keras, and Keras' own function is back after the check."""

import keras
import numpy as np
import pytest
import torch
from keras import ops

from jacverify import check_layer, keras_internals
from jacverify.backward.rules.convolutional.depthwise_conv import BackwardDepthwiseConv
from jacverify.check import float64_depthwise
from jacverify.check.checked_shortcut import CheckedShortcut
from jacverify.check.float64_depthwise import (
    depthwise_as_shifted_sums,
    fast_float64_depthwise,
    same_padding,
)

#: (input shape, kernel shape, strides, padding, dilation): the EfficientNet and MobileNet
#: blocks' shapes, odd sizes, depth multipliers, dilation, unequal strides.
CONFIGS = [
    ((4, 16, 16, 8), (3, 3, 8, 1), (2, 2), "same", (1, 1)),
    ((4, 8, 8, 12), (3, 3, 12, 1), (1, 1), "same", (1, 1)),
    ((4, 2, 2, 16), (5, 5, 16, 1), (1, 1), "same", (1, 1)),
    ((4, 4, 4, 6), (5, 5, 6, 1), (2, 2), "same", (1, 1)),
    ((3, 9, 9, 4), (3, 3, 4, 1), (2, 2), "valid", (1, 1)),
    ((3, 10, 10, 4), (5, 5, 4, 1), (1, 1), "same", (2, 2)),
    ((3, 7, 7, 3), (3, 3, 3, 2), (1, 1), "valid", (1, 1)),
    ((3, 8, 8, 3), (3, 3, 3, 3), (2, 2), "same", (1, 1)),
    ((2, 17, 13, 2), (4, 2, 2, 1), (3, 3), "same", (1, 1)),
    ((2, 9, 10, 2), (2, 3, 2, 2), (1, 2), "valid", (2, 1)),
]


def _arrays(config, seed=0):
    shape, kernel_shape, *_ = config
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.standard_normal(shape)),
            torch.tensor(rng.standard_normal(kernel_shape)))


def _keras(x, kernel, config):
    _, _, strides, padding, dilation = config
    return ops.depthwise_conv(x, kernel, strides, padding, dilation_rate=dilation)


@pytest.fixture(autouse=True)
def fresh_configurations(monkeypatch):
    """Each test starts with no configuration compared yet."""
    monkeypatch.setattr(float64_depthwise, "_shortcut", CheckedShortcut())


def test_a_hand_computed_convolution():
    x = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 3, 3, 1)
    kernel = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64).reshape(2, 2, 1, 1)
    # x[r, c] - x[r + 1, c + 1] = -4 at every valid position
    valid = depthwise_as_shifted_sums(x, kernel, (1, 1), "valid", (1, 1))
    assert torch.equal(valid, torch.full((1, 2, 2, 1), -4.0, dtype=torch.float64))
    # "same" with stride 2 on 3 values pads one zero after: rows/cols (0, 2) -> 1 - 5, 3 - 0,
    # 7 - 0, 9
    strided = depthwise_as_shifted_sums(x, kernel, (2, 2), "same", (1, 1))
    assert strided[0, :, :, 0].tolist() == [[-4.0, 3.0], [7.0, 9.0]]


@pytest.mark.parametrize("size,kernel,stride,dilation",
                         [(3, 2, 2, 1), (16, 3, 2, 1), (10, 5, 1, 2), (17, 4, 3, 1), (1, 3, 1, 1)])
def test_same_padding_gives_one_output_per_stride(size, kernel, stride, dilation):
    before, after = same_padding(size, kernel, stride, dilation)
    outputs = (size + before + after - (kernel - 1) * dilation - 1) // stride + 1
    assert outputs == -(-size // stride)
    assert after - before in (0, 1)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[4]}"
                         if isinstance(c, tuple) else str(c))
def test_shifted_sums_equal_keras_up_to_rounding(config):
    x, kernel = _arrays(config)
    with torch.no_grad():
        expected = _keras(x, kernel, config)
        got = depthwise_as_shifted_sums(x, kernel, config[2], config[3], config[4])
        magnitude = _keras(x.abs(), kernel.abs(), config)
    assert got.shape == expected.shape
    terms = config[1][0] * config[1][1]
    bound = 2 * terms * np.finfo(np.float64).eps * magnitude
    assert bool(((got - expected).abs() <= bound).all())


def test_inside_the_block_float64_without_gradients_takes_the_shortcut(monkeypatch):
    config = CONFIGS[0]
    x, kernel = _arrays(config)
    calls = []
    shifted = float64_depthwise.depthwise_as_shifted_sums
    monkeypatch.setattr(float64_depthwise, "depthwise_as_shifted_sums",
                        lambda *a: calls.append(1) or shifted(*a))
    keras_function = keras_internals.backend_nn_function("depthwise_conv")
    with torch.no_grad():
        expected = _keras(x, kernel, config)
        with fast_float64_depthwise(), fast_float64_depthwise():  # nested: one replacement
            first = _keras(x, kernel, config)
            assert keras_internals.backend_nn_function("depthwise_conv") is not keras_function
            second = _keras(x, kernel, config)
    # every call, the first included, gets the shifted sums: not the calls before it decide
    assert len(calls) >= 2 and torch.equal(first, second)
    assert not torch.equal(second, expected)  # rounding differs
    assert torch.allclose(second, expected, rtol=1e-14, atol=1e-14)
    assert keras_internals.backend_nn_function("depthwise_conv") is keras_function


def test_gradients_float32_and_channels_first_are_keras_own():
    config = CONFIGS[1]
    x, kernel = _arrays(config)
    x32, kernel32 = x.float(), kernel.float()
    with torch.no_grad():
        expected32 = _keras(x32, kernel32, config)
    x_grad = x.clone().requires_grad_(True)
    expected64 = _keras(x_grad, kernel, config)
    (expected_gradient,) = torch.autograd.grad(expected64.sum(), x_grad)
    with fast_float64_depthwise():
        for _ in range(2):  # also after the configuration agreed
            with torch.no_grad():
                assert torch.equal(_keras(x32, kernel32, config), expected32)
                _keras(x, kernel, config)
            got = _keras(x_grad, kernel, config)
            (gradient,) = torch.autograd.grad(got.sum(), x_grad)
            assert torch.equal(got, expected64) and torch.equal(gradient, expected_gradient)
        first = x.permute(0, 3, 1, 2)
        with torch.no_grad():
            channels_first = ops.depthwise_conv(first, kernel, 1, "same",
                                                data_format="channels_first")
    assert torch.equal(channels_first, ops.depthwise_conv(first, kernel, 1, "same",
                                                          data_format="channels_first"))


def test_a_configuration_that_disagrees_stays_with_keras(monkeypatch):
    config = CONFIGS[2]
    x, kernel = _arrays(config)
    shifted = float64_depthwise.depthwise_as_shifted_sums
    monkeypatch.setattr(float64_depthwise, "depthwise_as_shifted_sums",
                        lambda *a: shifted(*a) * (1 + 1e-9))
    with torch.no_grad():
        expected = _keras(x, kernel, config)
        with fast_float64_depthwise():
            got = [_keras(x, kernel, config) for _ in range(3)]
    assert all(torch.equal(g, expected) for g in got)
    assert list(float64_depthwise._shortcut.agreements.values()) == [False]


def test_inputs_that_are_not_finite_are_keras_own():
    config = CONFIGS[3]
    x, kernel = _arrays(config)
    x[0, 1, 1, 0] = np.inf
    x[1, 2, 0, 1] = np.nan
    with torch.no_grad():
        expected = _keras(x, kernel, config)
        with fast_float64_depthwise():
            got = _keras(x, kernel, config)
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(expected))
    assert torch.equal(torch.isnan(got), torch.isnan(expected))


def test_a_layer_s_variable_kernel_takes_the_shortcut(monkeypatch):
    layer = keras.layers.DepthwiseConv2D(3, padding="same", dtype="float64")
    x = torch.tensor(np.random.default_rng(1).standard_normal((2, 6, 6, 3)))
    calls = []
    shifted = float64_depthwise.depthwise_as_shifted_sums
    monkeypatch.setattr(float64_depthwise, "depthwise_as_shifted_sums",
                        lambda *a: calls.append(1) or shifted(*a))
    with torch.no_grad():
        expected = layer(x)
        with fast_float64_depthwise():
            layer(x)
            got = layer(x)
    assert calls and torch.allclose(got, expected, rtol=1e-14, atol=1e-14)


class _DoubledDepthwise(BackwardDepthwiseConv):
    """Twice the right gradient."""

    def _linear_backward(self, gradient, in_sizes):
        return 2 * super()._linear_backward(gradient, in_sizes)


@pytest.mark.parametrize("rule,verdict", [(None, "pass"), (_DoubledDepthwise, "fail")])
def test_depthwise_rules_are_judged_as_before(rule, verdict):
    layer = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")
    result = check_layer(layer, rule, input_shape=(6, 6, 3), examples=10, seed=0)
    assert result.verdict == verdict, result.reason
